// Draws the dashboard's charts from the data the page embeds (the tables hold the same data).
"use strict";

(function () {
  const source = document.getElementById("dashboard-charts");
  if (!source || typeof Chart === "undefined") return;
  const charts = JSON.parse(source.textContent);
  const palette = ["#417690", "#e6855e", "#79aec8", "#5b8c5a", "#c9a227", "#8e6bb8", "#b05f6d", "#4a4a4a"];
  // Kept on window so that people (and browser tests) can see what was drawn.
  window.gatehouseCharts = {};
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    const series = charts[canvas.dataset.chart];
    const names = Object.keys(series.lines);
    window.gatehouseCharts[canvas.dataset.chart] = new Chart(canvas, {
      type: canvas.dataset.kind || "line",
      data: {
        labels: series.labels,
        datasets: names.map(function (name, index) {
          return {
            label: name,
            data: series.lines[name],
            backgroundColor: palette[index % palette.length],
            borderColor: palette[index % palette.length],
            tension: 0.25,
            spanGaps: true,
          };
        }),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked: canvas.dataset.kind === "bar" }, y: { beginAtZero: true, stacked: canvas.dataset.kind === "bar" } },
      },
    });
    // The chart now says what the table says; the table stays a click away.
    const figures = canvas.closest("section").querySelector("details.console-figures");
    if (figures) figures.open = false;
  });
})();
