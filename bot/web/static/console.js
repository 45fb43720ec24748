// The console's only script: CSRF header for htmx requests, and the report charts.
// Loaded from /console/static (the Content-Security-Policy allows no inline script).
"use strict";

document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

function drawCharts() {
  var source = document.getElementById("report-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  Chart.defaults.animation = false;
  Chart.defaults.color = "#1f2933";
  Chart.defaults.font.size = 13;
  var blue = "#1d4ed8", orange = "#b45309", green = "#15803d", grey = "#6b7280";

  function keys(object) { return Object.keys(object || {}); }
  function values(object, names) { return names.map(function (n) { return (object || {})[n] || 0; }); }
  function pct(value) { return value === null || value === undefined ? null : Math.round(value * 1000) / 10; }
  function draw(id, config) {
    var canvas = document.getElementById("chart-" + id);
    if (!canvas) { return; }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false }, config.options || {});
    new Chart(canvas, config);
    canvas.setAttribute("data-drawn", "true");
  }

  var categories = keys(Object.assign({}, data.volume.conversations_by_category, data.volume.tickets_by_category));
  draw("volume", { type: "bar", data: { labels: categories, datasets: [
    { label: "Conversations", data: values(data.volume.conversations_by_category, categories), backgroundColor: blue },
    { label: "Tickets", data: values(data.volume.tickets_by_category, categories), backgroundColor: orange }] } });

  var d = data.deflection;
  draw("deflection", { type: "doughnut", data: { labels: ["Deflected", "Escalated or not solved"], datasets: [
    { data: [d.deflected, Math.max(0, d.eligible_conversations - d.deflected)], backgroundColor: [green, grey] }] } });

  var priorities = keys(data.response_times);
  draw("times", { type: "bar", data: { labels: priorities, datasets: [
    { label: "First response (median)", backgroundColor: blue,
      data: priorities.map(function (p) { return data.response_times[p].first_response_minutes.median; }) },
    { label: "Resolution (median)", backgroundColor: orange,
      data: priorities.map(function (p) { return data.response_times[p].resolution_minutes.median; }) }] } });

  var slaPriorities = keys(data.sla_compliance);
  draw("sla", { type: "bar", options: { scales: { y: { min: 0, max: 100 } } }, data: { labels: slaPriorities, datasets: [
    { label: "First response met", backgroundColor: blue,
      data: slaPriorities.map(function (p) { return pct(data.sla_compliance[p].first_response.compliance); }) },
    { label: "Resolution met", backgroundColor: green,
      data: slaPriorities.map(function (p) { return pct(data.sla_compliance[p].resolution.compliance); }) }] } });

  var ratings = ["1", "2", "3", "4", "5"];
  draw("satisfaction", { type: "bar", data: { labels: ratings, datasets: [
    { label: "Ratings", data: values(data.satisfaction.distribution, ratings), backgroundColor: green }] } });

  var ages = ["<1d", "1-3d", "3-7d", "7d+"];  // tojson sorts keys; ages read youngest first
  draw("backlog", { type: "bar", data: { labels: ages, datasets: [
    { label: "Open tickets", data: values(data.backlog.by_age, ages), backgroundColor: orange }] } });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", drawCharts);
} else {
  drawCharts();
}
