// tula's web UI: the little the server-rendered pages need from a script.
// - live counters: polls /ui/status.json and turns two samples into rates;
// - the VIP form: add and remove backend rows, HTTP-only health check fields;
// - focus on what a page opened to say (an error summary, a notice);
// - the browser's local time beside each UTC time, and the full time as its title.
// Everything works without it (rows are added and removed by the server), except the live rates.
"use strict";

(function () {
  var POLL_MS = 2000;

  function rate(now, before, key, seconds) {
    if (!before || seconds <= 0) return null;
    var delta = now[key] - before[key];
    return delta < 0 ? 0 : delta / seconds;
  }

  // 1234567 -> ["1.2", "M"]
  function scaled(value) {
    var prefixes = ["", "k", "M", "G", "T"];
    var i = 0;
    while (value >= 1000 && i < prefixes.length - 1) {
      value /= 1000;
      i++;
    }
    return [value >= 100 || i === 0 ? Math.round(value).toString() : value.toFixed(1), prefixes[i]];
  }

  function packetRate(value) {
    if (value === null) return "…";
    var s = scaled(value);
    return s[0] + s[1] + " pkt/s";
  }

  function byteRate(value) {
    if (value === null) return "…";
    var s = scaled(value);
    return s[0] + " " + s[1] + "B/s";
  }

  function grouped(value) {
    return String(value).replace(/\B(?=(\d{3})+(?!\d))/g, "\u2009");
  }

  function setText(root, field, text) {
    var node = root.querySelector('[data-live="' + field + '"]');
    if (node && node.textContent !== text) node.textContent = text;
  }

  function byAttr(attr, value) {
    var all = document.querySelectorAll("[" + attr + "]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute(attr) === value) return all[i];
    }
    return null;
  }

  var previous = null;

  // A draining backend's note: "draining: 14 active flows", "drained — no flows since <time>".
  function setDrain(line, drain) {
    var note = line.querySelector('[data-live="drain"]');
    if (!drain) {
      if (note) note.parentNode.removeChild(note);
      return;
    }
    if (note && note.getAttribute("data-drain") === drain.key) return;
    if (!note) {
      var state = line.querySelector('[data-live="state"]');
      if (!state) return;
      note = document.createElement("small");
      note.className = "drain";
      note.setAttribute("data-live", "drain");
      state.parentNode.appendChild(note);
    }
    note.setAttribute("data-drain", drain.key);
    note.textContent = drain.text;
    if (drain.since) {
      var time = document.createElement("time");
      time.setAttribute("datetime", drain.since);
      time.textContent = drain.since.replace("T", " ").replace("Z", " UTC");
      note.appendChild(document.createTextNode(" "));
      note.appendChild(time);
      showLocalTime(time);
    }
  }

  function render(sample) {
    var seconds = previous ? (sample.time_ms - previous.time_ms) / 1000 : 0;
    Object.keys(sample.vips).forEach(function (name) {
      var vip = sample.vips[name];
      var before = previous && previous.vips[name];
      var pps = packetRate(rate(vip, before, "packets", seconds));
      var bps = byteRate(rate(vip, before, "bytes", seconds));
      var upText = vip.up + " / " + vip.total;
      var drainingText = vip.draining ? vip.draining + " draining" : "none draining";
      var row = byAttr("data-vip", name);
      if (row) {
        var badge = row.querySelector('[data-live="backends"]');
        if (badge && vip.health) badge.className = "badge health-" + vip.health;
        setText(row, "pps", pps);
        setText(row, "bps", bps);
        setText(row, "backends", upText);
        setText(row, "draining", drainingText);
        setText(row, "active_flows", grouped(vip.active_flows));
        setText(row, "table_entries", grouped(vip.table_entries));
      }
      if (!byAttr("data-live-vip", name)) return;
      var counters = document.getElementById("counters");
      if (counters) {
        setText(counters, "pps", pps);
        setText(counters, "bps", bps);
        setText(counters, "packets", grouped(vip.packets));
        setText(counters, "bytes", grouped(vip.bytes));
      }
      var backends = document.getElementById("backends");
      if (!backends) return;
      setText(backends, "backends", upText);
      setText(backends, "draining", drainingText);
      // The rows' figures are found by column: their header cell names the field.
      var columns = {};
      backends.querySelectorAll("thead th[data-live]").forEach(function (th) {
        columns[th.getAttribute("data-live")] = th.cellIndex;
      });
      function setCell(line, field, text) {
        var cell = line.cells[columns[field]];
        if (cell && cell.textContent !== text) cell.textContent = text;
      }
      Object.keys(vip.backends).forEach(function (address) {
        var line = backends.querySelector('tr[data-backend="' + address + '"]');
        if (!line) return;
        var backend = vip.backends[address];
        setCell(line, "active_flows", grouped(backend.active_flows));
        setCell(line, "table_entries", grouped(backend.table_entries));
        setDrain(line, backend.drain);
        setCell(line, "packets", grouped(backend.packets));
        setCell(line, "bytes", grouped(backend.bytes));
        setText(line, "health", backend.healthy ? "healthy" : "unhealthy");
        var health = line.querySelector('[data-live="health"]');
        if (health) {
          health.classList.toggle("badge-ok", backend.healthy);
          health.classList.toggle("badge-error", !backend.healthy);
        }
      });
    });
    Object.keys(sample.interfaces).forEach(function (name) {
      var row = byAttr("data-iface", name);
      if (!row) return;
      var now = sample.interfaces[name];
      var before = previous && previous.interfaces[name];
      setText(row, "rx_pps", packetRate(rate(now, before, "rx_packets", seconds)));
      setText(row, "tx_pps", packetRate(rate(now, before, "tx_packets", seconds)));
      setText(row, "rx_bps", byteRate(rate(now, before, "rx_bytes", seconds)));
      setText(row, "tx_bps", byteRate(rate(now, before, "tx_bytes", seconds)));
    });
    previous = sample;
  }

  function poll() {
    fetch(statusUrl(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(render)
      .catch(function () {
        /* The next poll tries again; the page keeps its last figures. */
      })
      .then(function () {
        window.setTimeout(poll, POLL_MS);
      });
  }

  // Only the VIPs on the page: their counters are all the server reads.
  function statusUrl() {
    var names = [];
    document.querySelectorAll("[data-vip], [data-live-vip]").forEach(function (node) {
      names.push(node.getAttribute("data-vip") || node.getAttribute("data-live-vip"));
    });
    return "/ui/status.json?vips=" + encodeURIComponent(names.join(","));
  }

  function startLive() {
    if (document.querySelector("[data-live-vips], [data-live-vip]")) poll();
  }

  // The VIP form's backend rows.
  function setUpBackendRows() {
    var add = document.getElementById("add-backend");
    var rows = document.getElementById("backend-rows");
    var template = document.getElementById("backend-row-template");
    if (!add || !rows || !template) return;
    add.addEventListener("click", function (event) {
      event.preventDefault();
      var next = parseInt(add.getAttribute("data-next-row"), 10) || 0;
      add.setAttribute("data-next-row", String(next + 1));
      var number = rows.querySelectorAll("tr.backend-row").length + 1;
      var html = template.innerHTML.replace(/__ROW__/g, String(next)).replace(/__N__/g, String(number));
      rows.insertAdjacentHTML("beforeend", html);
      var input = document.getElementById("f-b" + next + "_address");
      if (input) input.focus();
    });
    rows.addEventListener("click", function (event) {
      var button = event.target.closest("button.remove-row");
      if (!button) return;
      event.preventDefault();
      var row = button.closest("tr");
      var following = row.nextElementSibling || row.previousElementSibling;
      row.parentNode.removeChild(row);
      var focus = following ? following.querySelector("input") : add;
      (focus || add).focus();
    });
  }

  // HTTP path and expected status only apply to HTTP(S) checks.
  function setUpHealthCheck() {
    var type = document.getElementById("f-hc_type");
    var group = document.querySelector("[data-http-only]");
    if (!type || !group) return;
    function sync() {
      var http = type.value === "http" || type.value === "https";
      group.hidden = !http;
      group.querySelectorAll("input").forEach(function (input) {
        input.disabled = !http;
      });
    }
    type.addEventListener("change", sync);
    sync();
  }

  // "12:04:05 UTC" gets "(13:04:05 local)" after it when the browser is not on UTC.
  function showLocalTime(node) {
    if (!node.title) node.title = node.getAttribute("datetime");
    var when = new Date(node.getAttribute("datetime"));
    if (isNaN(when.getTime()) || when.getTimezoneOffset() === 0) return;
    var local = document.createElement("span");
    local.className = "local-time";
    local.textContent = " (" + when.toLocaleString() + " local)";
    node.parentNode.insertBefore(local, node.nextSibling);
  }

  function showLocalTimes() {
    document.querySelectorAll("time[datetime]").forEach(showLocalTime);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var opened = document.getElementById("error-summary") || document.getElementById("form-notice");
    if (opened) opened.focus();
    setUpBackendRows();
    setUpHealthCheck();
    showLocalTimes();
    startLive();
  });
})();
