// Dashboard charts (Chart.js) from the numbers the page carries as JSON.
"use strict";
(function () {
  if (typeof Chart === "undefined") return;
  const data = JSON.parse(document.getElementById("dashboard-data").textContent);
  const colors = { completed: "#3c9a5a", failed: "#c0392b", queued: "#e0a800", processing: "#4a78c2" };
  const days = Object.keys(data.per_day).sort();
  new Chart(document.getElementById("per-day"), {
    type: "bar",
    data: {
      labels: days,
      datasets: data.statuses.map((status) => ({
        label: status,
        data: days.map((day) => data.per_day[day][status] || 0),
        backgroundColor: colors[status] || "#888",
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
  new Chart(document.getElementById("failures"), {
    type: "bar",
    data: {
      labels: data.failures.map((row) => row[0]),
      datasets: [{ label: "failed calls", data: data.failures.map((row) => row[1]), backgroundColor: "#c0392b" }],
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true } } },
  });
  new Chart(document.getElementById("signals"), {
    type: "bar",
    data: {
      labels: data.signal_hits.map((row) => `${row[0]} · ${row[1]}`),
      datasets: [{
        label: "% of the campaign's calls",
        data: data.signal_hits.map((row) => (row[3] ? (100 * row[2]) / row[3] : 0)),
        backgroundColor: "#4a78c2",
      }],
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true, max: 100 } } },
  });
})();
