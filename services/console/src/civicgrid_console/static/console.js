/* civicgrid console: the little behaviour the pages need, attached to data-* attributes (no inline
   scripts: the Content-Security-Policy allows scripts from this origin only). Maps (Leaflet) and
   charts (Apache ECharts) are only set up on pages that load those libraries. */
(function () {
  "use strict";

  function json(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  var STATE_COLOURS = { overdue: "#b3261e", open: "#b85c00", clear: "#2e7d32" };

  function baseMap(el) {
    var map = L.map(el, { attributionControl: false, zoomSnap: 0.25 });
    if (el.dataset.tiles) {
      L.tileLayer(el.dataset.tiles, { maxZoom: 19 }).addTo(map);
    }
    return map;
  }

  function pickMap(el, fc) {
    var map = baseMap(el);
    var layer = L.geoJSON(fc, { style: { color: "#1f4e79", weight: 1, fillOpacity: 0.05 } }).addTo(map);
    if (layer.getBounds().isValid()) { map.fitBounds(layer.getBounds()); } else { map.setView([39.9, 116.4], 12); }
    var lat = document.getElementById(el.dataset.pickLat);
    var lon = document.getElementById(el.dataset.pickLon);
    var pin = null;
    function place(latlng) {
      if (pin) { pin.setLatLng(latlng); } else {
        pin = L.circleMarker(latlng, { radius: 9, color: "#b3261e", weight: 3, fillOpacity: 0.6 }).addTo(map);
      }
    }
    map.on("click", function (e) {
      place(e.latlng);
      lat.value = e.latlng.lat.toFixed(6);
      lon.value = e.latlng.lng.toFixed(6);
    });
    function fromInputs() {
      var a = parseFloat(lat.value), b = parseFloat(lon.value);
      if (!isNaN(a) && !isNaN(b)) { place([a, b]); }
    }
    lat.addEventListener("change", fromInputs);
    lon.addEventListener("change", fromInputs);
    fromInputs();
  }

  function areaMap(el, fc) {
    var state = json(el.dataset.state) || {};
    var map = baseMap(el);
    var shown = { type: "FeatureCollection", features: fc.features.filter(function (f) {
      return state[f.properties.code] !== undefined;
    }) };
    var layer = L.geoJSON(shown, {
      style: function (f) {
        var s = state[f.properties.code];
        return { color: "#333", weight: 1, fillColor: STATE_COLOURS[s.state], fillOpacity: s.state === "clear" ? 0.15 : 0.5 };
      },
      onEachFeature: function (f, l) {
        var s = state[f.properties.code];
        l.bindTooltip(f.properties.code + " · " + s.open + " / " + s.overdue);
        l.on("click", function () { window.location.href = el.dataset.link + f.properties.code; });
      }
    }).addTo(map);
    if (layer.getBounds().isValid()) { map.fitBounds(layer.getBounds()); }
  }

  function defectMap(el) {
    var fc = json(el.dataset.features);
    var map = baseMap(el);
    var layer = L.geoJSON(fc, {
      style: function (f) {
        return f.properties.defect ? { color: "#b3261e", weight: 3, fillOpacity: 0.35 }
                                   : { color: "#1f4e79", weight: 1, fillOpacity: 0.05 };
      },
      pointToLayer: function (f, latlng) { return L.circleMarker(latlng, { radius: 6 }); },
      onEachFeature: function (f, l) {
        l.bindTooltip("#" + f.properties.index + " " + (f.properties.code || "") + " " + (f.properties.kind || ""));
      }
    }).addTo(map);
    if (layer.getBounds().isValid()) { map.fitBounds(layer.getBounds()); } else { map.setView([39.9, 116.4], 12); }
  }

  function maps() {
    if (typeof L === "undefined") { return; }
    document.querySelectorAll(".map").forEach(function (el) {
      if (el.dataset.features) { defectMap(el); return; }
      if (!el.dataset.geojson) { return; }
      fetch(el.dataset.geojson, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (fc) {
          if (el.dataset.pickLat) { pickMap(el, fc); } else if (el.dataset.state) { areaMap(el, fc); }
        });
    });
  }

  function charts() {
    if (typeof echarts === "undefined") { return; }
    var labels = json("kpi-labels") || {};
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var rows = json(el.dataset.source) || [];
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption({
        animation: false,
        grid: { left: 8, right: 16, top: 8, bottom: 8, containLabel: true },
        xAxis: { type: "value", max: el.dataset.max ? Number(el.dataset.max) : null },
        yAxis: { type: "category", data: rows.map(function (r) { return labels[r[0]] || r[0]; }), inverse: true },
        series: [{ type: "bar", data: rows.map(function (r) { return r[1]; }), itemStyle: { color: "#1f4e79" },
                   label: { show: true, position: "right", formatter: "{c}" + (el.dataset.unit || "") } }]
      });
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }

  function copyFields() {
    document.querySelectorAll("input.copy").forEach(function (el) {
      el.addEventListener("focus", function () { el.select(); });
    });
  }

  // a refused form: its summary of errors takes the focus, so it is read out first and each of its
  // links leads to a field
  function errorSummary() {
    var el = document.getElementById("form-errors");
    if (!el) { return; }
    if (!el.hasAttribute("tabindex")) { el.setAttribute("tabindex", "-1"); }
    el.focus();
  }

  document.addEventListener("DOMContentLoaded", function () { maps(); charts(); copyFields(); errorSummary(); });
})();
