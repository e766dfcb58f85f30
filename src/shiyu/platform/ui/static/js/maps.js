// Maps without a tile server: grids and units drawn from our own GeoJSON.
(function () {
  function colour(n, max) {
    if (!n) return "#f7fbff";
    var t = Math.min(1, n / Math.max(1, max)), stops = ["#fee8c8", "#fdbb84", "#fc8d59", "#e34a33", "#b30000"];
    return stops[Math.min(stops.length - 1, Math.floor(t * stops.length))];
  }
  function base(el) {
    var map = L.map(el, { zoomControl: true, attributionControl: false, preferCanvas: true });
    map.setView([32.05, 118.8], 10);
    return map;
  }
  function loadGrids(map, withCounts, done) {
    fetch("/map/grids.geojson", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (fc) {
      var max = 0; fc.features.forEach(function (f) { max = Math.max(max, f.properties.count || 0); });
      var layer = L.geoJSON(fc, {
        style: function (f) {
          return { color: "#7a8796", weight: 1, fillOpacity: withCounts ? 0.75 : 0.25,
                   fillColor: withCounts ? colour(f.properties.count, max) : "#dfe7ef" };
        },
        onEachFeature: function (f, l) { l.bindTooltip(f.properties.name + (withCounts ? " · " + (f.properties.count || 0) : "")); }
      }).addTo(map);
      if (fc.features.length) map.fitBounds(layer.getBounds());
      if (done) done(layer);
    });
  }
  function overview(el) {
    var map = base(el);
    loadGrids(map, true, function () {
      fetch("/map/items.geojson", { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (fc) {
        L.geoJSON(fc, {
          pointToLayer: function (f, ll) {
            var p = f.properties, done = ["closed", "rated", "rejected", "merged"].indexOf(p.status) >= 0;
            return L.circleMarker(ll, { radius: 5, weight: 1, color: "#fff", fillOpacity: 0.9,
              fillColor: p.overdue ? "#c62828" : (done ? "#9e9e9e" : "#1f5fbf") });
          },
          onEachFeature: function (f, l) {
            l.bindPopup('<a href="/items/' + f.properties.id + '">' + f.properties.number + "</a><br>" +
              String(f.properties.title).replace(/[<>&]/g, ""));
          }
        }).addTo(map);
      });
    });
  }
  function picker(el) {
    var map = base(el), marker = null, lon = document.getElementById("lon"), lat = document.getElementById("lat"),
        info = document.getElementById("gridinfo");
    loadGrids(map, false);
    function place(ll, fromInput) {
      if (marker) marker.setLatLng(ll); else marker = L.marker(ll).addTo(map);
      if (!fromInput) { lon.value = ll.lng.toFixed(6); lat.value = ll.lat.toFixed(6); }
      fetch("/map/locate?lon=" + ll.lng + "&lat=" + ll.lat, { credentials: "same-origin" })
        .then(function (r) { return r.json(); }).then(function (g) { info.textContent = g.grid ? g.name + " (" + g.grid + ")" : "-"; });
    }
    map.on("click", function (e) { place(e.latlng, false); });
    [lon, lat].forEach(function (inp) {
      inp.addEventListener("change", function () {
        var x = parseFloat(lon.value), y = parseFloat(lat.value);
        if (!isNaN(x) && !isNaN(y)) place(L.latLng(y, x), true);
      });
    });
    if (lon.value && lat.value) place(L.latLng(parseFloat(lat.value), parseFloat(lon.value)), true);
  }
  function start() {
    if (!window.L) return;
    // Once per element: HTMX swaps (e.g. the report form coming back with errors) bring new ones.
    var fresh = function (el) { return !el._leaflet_id; };
    Array.prototype.filter.call(document.querySelectorAll("[data-overview]"), fresh).forEach(overview);
    Array.prototype.filter.call(document.querySelectorAll("[data-pick]"), fresh).forEach(picker);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
  document.addEventListener("htmx:afterSettle", start);
})();
