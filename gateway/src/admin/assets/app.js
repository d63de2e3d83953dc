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
  // The Update page: the bundle is sent as the raw body with the session's
  // CSRF token in its header, and the install's progress is polled.
  function updatePage() {
    var form = document.getElementById("upload-form");
    if (form && window.fetch) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        var input = document.getElementById("upload-file");
        var state = document.getElementById("upload-state");
        if (!input.files || !input.files[0]) { return; }
        var meta = document.querySelector('meta[name="csrf"]');
        state.className = "";
        state.textContent = "uploading and verifying…";
        fetch(form.getAttribute("data-upload"), {
          method: "POST", credentials: "same-origin",
          headers: { "X-CSRF-Token": meta ? meta.getAttribute("content") : "", "Content-Type": "application/octet-stream" },
          body: input.files[0]
        }).then(function (r) { return r.json(); }).then(function (j) {
          if (j.verified) { window.location.reload(); return; }
          state.className = "error";
          state.textContent = "Refused: " + text(j.error);
        }).catch(function () {
          state.className = "error";
          state.textContent = "The upload failed.";
        });
      });
    }
    var box = document.getElementById("install-progress");
    if (!box || !window.fetch) { return; }
    var running = ["starting", "verify", "write", "read back"];
    // As the page was rendered: an install that finishes between two polls
    // is still seen to have run, and the slots are shown afresh.
    var shown = document.getElementById("install-phase");
    var wasRunning = running.indexOf(shown ? shown.textContent.trim() : "") >= 0;
    function poll() {
      fetch(box.getAttribute("data-progress"), { credentials: "same-origin", cache: "no-store" }).then(function (r) {
        return r.json();
      }).then(function (p) {
        var now = running.indexOf(p.phase) >= 0;
        box.hidden = !p.phase;
        document.getElementById("install-phase").textContent = text(p.phase);
        var bar = document.getElementById("install-bar");
        bar.max = p.total || 1;
        bar.value = p.done;
        document.getElementById("install-bytes").textContent = p.done + " / " + p.total + " bytes";
        document.getElementById("install-result").textContent = text(p.result);
        // Finished: the slots table is shown afresh.
        if (wasRunning && !now) { window.location.reload(); }
        wasRunning = now;
      }).catch(function () {});
    }
    poll();
    window.setInterval(poll, 500);
  }
  document.addEventListener("DOMContentLoaded", function () { liveLog(); liveDashboard(); confirmations(); updatePage(); });
})();
