// Ecko Edge admin page: progressive enhancement only. Every page works
// without this script; it adds the live log, the live dashboard and
// confirmations.
(function () {
  "use strict";
  function text(s) { return s === null || s === undefined ? "" : String(s); }
  function cell(row, value, cls) {
    var td = document.createElement("td");
    td.textContent = text(value);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }
  function liveLog() {
    var table = document.getElementById("live-log");
    if (!table || !window.EventSource) { return; }
    var body = table.tBodies[0];
    var state = document.getElementById("live-state");
    // The page names the stream with its filters; times come written in
    // the site's time zone by the server.
    var source = new EventSource(table.getAttribute("data-stream") || "/logs/stream");
    source.addEventListener("open", function () { if (state) { state.textContent = "live"; } });
    source.addEventListener("error", function () {
      if (state) { state.textContent = source.readyState === 2 ? "stopped (log in again)" : "reconnecting…"; }
    });
    source.addEventListener("log", function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (_) { return; }
      var row = document.createElement("tr");
      row.className = "event";
      row.setAttribute("data-message", text(ev.message_id));
      cell(row, ev.time);
      cell(row, ev.kind + (ev.outcome ? " " + ev.outcome : ""), ev.outcome ? "st-" + ev.outcome : "");
      cell(row, ev.destination || ev.source);
      cell(row, ev.message_type);
      cell(row, ev.control_id);
      cell(row, ev.duration_ms === null || ev.duration_ms === undefined ? "" : ev.duration_ms + " ms");
      var link = cell(row, "");
      if (ev.message_id) {
        var a = document.createElement("a");
        a.href = "/messages/" + ev.message_id;
        a.textContent = "#" + ev.message_id;
        link.appendChild(a);
      }
      body.insertBefore(row, body.firstChild);
      while (body.rows.length > 200) { body.deleteRow(body.rows.length - 1); }
    });
  }
  // The dashboard's live part is fetched again (as HTML the server rendered
  // with escaping) when the live log reports anything, at most once a
  // second, and every 10 s for link changes that log nothing.
  function liveDashboard() {
    var box = document.getElementById("dashboard");
    if (!box || !window.fetch) { return; }
    var url = box.getAttribute("data-live");
    var state = document.getElementById("dashboard-state");
    var pending = null;
    function refresh() {
      pending = null;
      fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.text();
      }).then(function (html) {
        box.innerHTML = html;
        if (state) { state.textContent = "live"; }
      }).catch(function () {
        if (state) { state.textContent = "not updating (log in again?)"; }
      });
    }
    function soon() { if (!pending) { pending = window.setTimeout(refresh, 1000); } }
    if (window.EventSource) {
      var source = new EventSource("/logs/stream");
      source.addEventListener("log", soon);
      source.addEventListener("open", function () { if (state) { state.textContent = "live"; } });
    }
    window.setInterval(refresh, 10000);
  }
  function confirmations() {
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { liveLog(); liveDashboard(); confirmations(); });
})();
