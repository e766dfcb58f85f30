// Shiyu workbench behaviour: HTMX settings, toasts, inbox selection and keyboard.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      // 422 carries form errors to show; other 4xx/5xx are errors.
      htmx.config.responseHandling = [
        { code: "204", swap: false }, { code: "[23]..", swap: true },
        { code: "422", swap: true, error: false }, { code: "[45]..", swap: false, error: true }];
    }
    init(document);
  });
  document.addEventListener("htmx:afterSettle", function (e) { init(e.target); });
  document.body && document.body.addEventListener("toast", function (e) { toast(e.detail.value); });
  document.addEventListener("htmx:responseError", function (e) {
    var msg = "";
    try { var p = JSON.parse(e.detail.xhr.responseText); msg = p.detail || p.title; } catch (x) { msg = e.detail.xhr.statusText; }
    toast(msg);
  });
  function toast(text) {
    var t = document.getElementById("toast"); if (!t || !text) return;
    t.textContent = text; t.classList.add("on"); setTimeout(function () { t.classList.remove("on"); }, 4000);
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table[data-nav] tbody tr[data-href]")); }
  var cur = -1;
  function mark(i) {
    var r = rows(); if (!r.length) return;
    cur = Math.max(0, Math.min(r.length - 1, i));
    r.forEach(function (x, j) { x.classList.toggle("cur", j === cur); });
    r[cur].scrollIntoView({ block: "nearest" });
  }
  function count() {
    var n = document.querySelectorAll("input[name=ids]:checked").length, c = document.getElementById("selcount");
    if (c) c.textContent = n;
    document.querySelectorAll("input[name=ids]").forEach(function (b) { b.closest("tr").classList.toggle("sel", b.checked); });
  }
  function init(root) {
    var all = root.querySelector && root.querySelector("input[data-all]");
    if (all) all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (b) { b.checked = all.checked; }); count();
    });
    (root.querySelectorAll ? root.querySelectorAll("input[name=ids]") : []).forEach(function (b) { b.addEventListener("change", count); });
    var kind = document.getElementById("kind"), cat = document.querySelector("select[data-kind-filter]");
    if (kind && cat) {
      var sync = function () {
        Array.prototype.forEach.call(cat.options, function (o) { if (o.dataset.kind) o.hidden = o.dataset.kind !== kind.value; });
      };
      kind.addEventListener("change", sync); sync();
    }
  }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) return;
    var r = rows();
    if (e.key === "j") { mark(cur + 1); e.preventDefault(); }
    else if (e.key === "k") { mark(cur - 1); e.preventDefault(); }
    else if (e.key === "Enter" && cur >= 0 && r[cur]) { location.href = r[cur].dataset.href; }
    else if (e.key === "x" && cur >= 0 && r[cur]) { var b = r[cur].querySelector("input[name=ids]"); if (b) { b.checked = !b.checked; count(); } }
    else if (e.key === "/") { var s = document.querySelector("[data-key='/']"); if (s) { s.focus(); e.preventDefault(); } }
    else if (e.key === "a" || e.key === "d") { var btn = document.querySelector("button[data-key='" + e.key + "']"); if (btn) btn.click(); }
  });
})();
