// Live calls: the server sends the whole list whenever it changes (server-sent events); durations tick here.
"use strict";
(function () {
  const body = document.getElementById("live-calls");
  const state = document.getElementById("live-state");
  const format = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null || text === "" ? "–" : String(text);
    return td;
  }

  function render(calls) {
    const rows = calls.map((call) => {
      const tr = document.createElement("tr");
      tr.dataset.callId = call.id;
      tr.dataset.since = call.answered_at || call.started_at;
      const duration = cell("");
      duration.className = "duration";
      const link = document.createElement("a");
      link.href = `/console/calls/${encodeURIComponent(call.id)}`;
      link.textContent = "open";
      const open = document.createElement("td");
      open.append(link);
      tr.append(cell(call.state), duration, cell(call.direction), cell(call.origin), cell(call.from), cell(call.to),
        cell(call.endpoint), open);
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell("No calls in progress.");
      td.colSpan = 8;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    tick();
  }

  function tick() {
    const now = Date.now();
    body.querySelectorAll("tr[data-since]").forEach((tr) => {
      const since = Date.parse(tr.dataset.since);
      const td = tr.querySelector(".duration");
      if (td && !Number.isNaN(since)) td.textContent = format(Math.max(0, (now - since) / 1000));
    });
  }

  const source = new EventSource("/console/live/events");
  source.addEventListener("calls", (event) => {
    render(JSON.parse(event.data));
    state.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
  });
  source.onerror = () => { state.textContent = "Reconnecting…"; };
  setInterval(tick, 1000);
  tick();
})();
