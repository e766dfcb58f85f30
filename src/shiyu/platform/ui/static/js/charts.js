// Dashboard charts (ECharts, rendered in the browser from figures the server computed).
(function () {
  function start() {
    if (!window.echarts) return;
    var el = document.getElementById("trend");
    if (el) {
      var rows = JSON.parse(el.dataset.trend), kinds = JSON.parse(el.dataset.kinds), labels = JSON.parse(el.dataset.labels);
      var days = Array.from(new Set(rows.map(function (r) { return r[0]; }))).sort();
      var series = kinds.map(function (k) {
        return { name: labels[k] || k, type: "line", smooth: true, stack: "all", areaStyle: {},
          data: days.map(function (d) { var m = rows.find(function (r) { return r[0] === d && r[1] === k; }); return m ? m[2] : 0; }) };
      });
      echarts.init(el).setOption({ tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 40, right: 10, top: 30, bottom: 30 },
        xAxis: { type: "category", data: days }, yAxis: { type: "value" }, series: series });
    }
    var top = document.getElementById("topcats");
    if (top) {
      var data = JSON.parse(top.dataset.top).slice().reverse();
      echarts.init(top).setOption({ tooltip: {}, grid: { left: 110, right: 20, top: 10, bottom: 20 },
        xAxis: { type: "value" }, yAxis: { type: "category", data: data.map(function (r) { return r[1]; }) },
        series: [{ type: "bar", data: data.map(function (r) { return r[2]; }), itemStyle: { color: "#b4232a" } }] });
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
