/* civicgrid console: the little behaviour the pages need, attached to data-* attributes (no inline
   scripts: the Content-Security-Policy allows scripts from this origin only). Maps (Leaflet) and
   charts (Apache ECharts) are only set up on pages that load those libraries; live regions are
   polled by htmx (their hx-* attributes) and kept considerate here. */
(function () {
  "use strict";

  // data for the scripts: a JSON block, or (inside a live region, whose answers htmx strips of every
  // <script> element) an element's data-json attribute
  function json(id) {
    var el = document.getElementById(id);
    if (!el) { return null; }
    return JSON.parse(el.hasAttribute("data-json") ? el.getAttribute("data-json") : el.textContent);
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

  var CLEAR = { state: "clear", open: 0, overdue: 0 };
  // the supervisor's area maps drawn, each with the grid state it shows (a live region brings a new one)
  var areaMaps = [];

  function gridStyle(s) {
    s = s || CLEAR;
    return { color: "#333", weight: 1, fillColor: STATE_COLOURS[s.state], fillOpacity: s.state === "clear" ? 0.15 : 0.5 };
  }

  function areaMap(el, fc) {
    var view = { el: el, state: json(el.dataset.state) || {} };
    var map = baseMap(el);
    var shown = { type: "FeatureCollection", features: fc.features.filter(function (f) {
      return view.state[f.properties.code] !== undefined;
    }) };
    view.layer = L.geoJSON(shown, {
      style: function (f) { return gridStyle(view.state[f.properties.code]); },
      onEachFeature: function (f, l) {
        l.bindTooltip(function () {
          var s = view.state[f.properties.code] || CLEAR;
          return f.properties.code + " · " + s.open + " / " + s.overdue;
        });
        l.on("click", function () { window.location.href = el.dataset.link + f.properties.code; });
      }
    }).addTo(map);
    if (view.layer.getBounds().isValid()) { map.fitBounds(view.layer.getBounds()); }
    areaMaps.push(view);
  }

  // a live region kept its map (hx-preserve) and brought the grids' new state: colour them by it
  function recolourAreaMaps(root) {
    areaMaps.forEach(function (view) {
      if (!root.contains(view.el)) { return; }
      view.state = json(view.el.dataset.state) || view.state;
      view.layer.setStyle(function (f) { return gridStyle(view.state[f.properties.code]); });
    });
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

  function charts(root) {
    if (typeof echarts === "undefined") { return; }
    var labels = json("kpi-labels") || {};
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
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
    });
  }

  function chartsIn(root) {
    if (typeof echarts === "undefined") { return []; }
    return Array.prototype.map.call(root.querySelectorAll(".chart[data-chart]"), function (el) {
      return echarts.getInstanceByDom(el);
    }).filter(Boolean);
  }

  window.addEventListener("resize", function () { chartsIn(document).forEach(function (c) { c.resize(); }); });

  // the tracking link is selected whole when it takes focus (also after a live region brought it anew)
  document.addEventListener("focusin", function (e) {
    if (e.target.matches && e.target.matches("input.copy")) { e.target.select(); }
  });

  // a refused form: its summary of errors takes the focus, so it is read out first and each of its
  // links leads to a field
  function errorSummary() {
    var el = document.getElementById("form-errors");
    if (!el) { return; }
    if (!el.hasAttribute("tabindex")) { el.setAttribute("tabindex", "-1"); }
    el.focus();
  }

  // ---- live regions (docs/adr/0303). htmx asks for each [data-live-region] every few seconds (its
  // hx-trigger); here the person comes first: a region they are using is neither asked for nor
  // replaced (focus in it, a form in it changed, a section in it opened), nothing is asked while the
  // tab is hidden (and the regions are asked at once when it shows again), an answer that changes
  // only the time it was read and the time left renews those words in place (the list is not
  // rebuilt under a reader), and a change -- or a failed update -- is written to the region's note,
  // a polite status: announced without moving focus.

  // what console.js knows of each region: the HTML it lasts with (``lasting``), whether the answer
  // being swapped in replaces it, whether the last update failed
  var regions = new WeakMap();

  function known(region) {
    if (!regions.has(region)) { regions.set(region, { lasting: null, replacing: false, failing: false }); }
    return regions.get(region);
  }

  function isRegion(el) { return !!(el && el.hasAttribute && el.hasAttribute("data-live-region")); }

  function regionOf(el) { return el && el.closest ? el.closest("[data-live-region]") : null; }

  function inUse(region) {
    var active = document.activeElement;
    var focused = active && active !== document.body && region.contains(active) && !active.closest("[hx-preserve]");
    return !!focused || region.querySelector("form[data-live-edited], details[data-live-opened]") !== null;
  }

  function parsed(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  // a region's HTML as the console sent it, less what changes on every answer (marked volatile)
  function lasting(html) {
    var content = parsed(html);
    content.querySelectorAll("[data-live-volatile]").forEach(function (el) { el.remove(); });
    var holder = document.createElement("div");
    holder.appendChild(content);
    return holder.innerHTML.trim();
  }

  function sameShape(a, b) {
    if (a.childNodes.length !== b.childNodes.length) { return false; }
    for (var i = 0; i < a.childNodes.length; i++) {
      if (a.childNodes[i].nodeName !== b.childNodes[i].nodeName) { return false; }
    }
    return true;
  }

  // the same words with new values: texts and attributes copied into the elements already shown
  function renew(shown, fresh) {
    Array.prototype.forEach.call(fresh.attributes, function (a) {
      if (shown.getAttribute(a.name) !== a.value) { shown.setAttribute(a.name, a.value); }
    });
    if (!sameShape(shown, fresh)) { shown.innerHTML = fresh.innerHTML; return; }
    for (var i = 0; i < fresh.childNodes.length; i++) {
      var was = shown.childNodes[i], now = fresh.childNodes[i];
      if (now.nodeType === Node.ELEMENT_NODE) { renew(was, now); }
      else if (was.nodeValue !== now.nodeValue) { was.nodeValue = now.nodeValue; }
    }
  }

  function renewVolatile(region, html) {
    var shown = region.querySelectorAll("[data-live-volatile]");
    var fresh = parsed(html).querySelectorAll("[data-live-volatile]");
    for (var i = 0; i < shown.length && i < fresh.length; i++) { renew(shown[i], fresh[i]); }
  }

  function note(region, text) {
    var el = document.getElementById(region.id + "-note");
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function edited(e) {
    var form = e.target.form;
    if (form && regionOf(form)) { form.setAttribute("data-live-edited", ""); }
  }
  document.addEventListener("input", edited);
  document.addEventListener("change", edited);
  document.addEventListener("toggle", function (e) {  // toggle does not bubble: caught on its way down
    var d = e.target;
    if (d.tagName !== "DETAILS" || !regionOf(d)) { return; }
    if (d.open) { d.setAttribute("data-live-opened", ""); } else { d.removeAttribute("data-live-opened"); }
  }, true);

  document.addEventListener("htmx:beforeRequest", function (e) {
    var region = e.detail.elt;
    if (isRegion(region) && (document.hidden || inUse(region))) { e.preventDefault(); }
  });

  document.addEventListener("htmx:beforeSwap", function (e) {
    var region = e.detail.target;
    if (!isRegion(region) || !e.detail.shouldSwap) { return; }
    var html = e.detail.serverResponse;
    if (inUse(region)) {  // taken into use while the answer was on its way
      e.detail.shouldSwap = false;
      return;
    }
    var state = known(region);
    if (state.failing) { note(region, ""); }
    state.failing = false;
    var now = lasting(html);
    if (now === state.lasting) {
      renewVolatile(region, html);
      e.detail.shouldSwap = false;
      return;
    }
    state.lasting = now;
    state.replacing = true;
    chartsIn(region).forEach(function (c) { c.dispose(); });
  });

  document.addEventListener("htmx:afterSwap", function (e) {
    var region = e.detail.target;
    if (!isRegion(region) || !known(region).replacing) { return; }
    known(region).replacing = false;
    var summary = region.querySelector("[data-live-summary]");
    var changed = region.dataset.liveChanged;
    var gap = /[\u3000-\u303f\uff00-\uffef]$/.test(changed) ? "" : " ";  // none after Chinese punctuation
    note(region, changed + (summary ? gap + summary.textContent.replace(/\s+/g, " ").trim() : ""));
    charts(region);
    recolourAreaMaps(region);
  });

  function failed(e) {
    var region = e.detail.elt;
    if (!isRegion(region)) { return; }
    known(region).failing = true;
    note(region, region.dataset.liveFailed);
  }
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);

  document.addEventListener("visibilitychange", function () {
    if (document.hidden || typeof htmx === "undefined") { return; }
    document.querySelectorAll("[data-live-region][hx-get]").forEach(function (region) {
      htmx.trigger(region, "live-refresh");
    });
  });

  // what each region shows as the page came (before maps and charts draw into it)
  function liveRegions() {
    document.querySelectorAll("[data-live-region]").forEach(function (region) {
      known(region).lasting = lasting(region.innerHTML);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { liveRegions(); maps(); charts(document); errorSummary(); });
})();
