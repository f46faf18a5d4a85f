// The dashboard's charts: each element with data-chart="ID" is drawn by
// uPlot from the JSON in <script type="application/json" id="ID">
// ({"at": [unix seconds…], "lines": [{"name", "values": […]}…]}).
// Served from the binary with uPlot itself; nothing is fetched.
(function () {
  "use strict";
  var COLORS = {
    sent: "#2f9e44",
    deferred: "#f08c00",
    skipped: "#868e96",
    failed: "#e03131",
    bounced: "#7048e8"
  };
  var HEIGHT = 280;

  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source || typeof uPlot === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var series = [{}];
    var values = [data.at];
    data.lines.forEach(function (line) {
      series.push({
        label: line.name,
        stroke: COLORS[line.name] || "#1c7ed6",
        width: 2,
        points: { show: data.at.length <= 48 }
      });
      values.push(line.values);
    });
    var width = function () { return Math.max(320, el.clientWidth); };
    var plot = new uPlot({
      width: width(),
      height: HEIGHT,
      series: series,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [{}, { label: "emails" }]
    }, values, el);
    el.setAttribute("data-points", String(data.at.length));
    window.addEventListener("resize", function () {
      plot.setSize({ width: width(), height: HEIGHT });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  });
})();
