// barfast search's HTML page: p50/p99 against the offered and the achieved rate, the SLO limits
// and the bracket, with uPlot (the data is the search's JSON document, above).
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("barfast-data").textContent);
  const charts = {};
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v, d) { return v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(d) : String(v)); }
  function width() { return Math.max(480, Math.min(1200, document.body.clientWidth - 16)); }

  const h = document.getElementById("header");
  h.appendChild(el("h1", {}, "barfast search: " + (D.target || "")));
  h.appendChild(el("p", {}, "SLOs: " + D.slos.join(", ")));
  const b = D.bracket;
  h.appendChild(el("p", {}, D.answer_rps === null
    ? "No rate held the SLOs; stopped: " + D.stop_reason
    : "Capacity: " + fmt(D.answer_rps, 1) + " req/s (holds at " + fmt(b.held, 1) + ", fails at " +
      fmt(b.failed, 1) + "); stopped: " + D.stop_reason));

  // The bracket [held, failed] as a shaded band on the offered-rate chart.
  function shade(u) {
    if (b.held === null || b.held === undefined) return;
    const hi = b.failed === null || b.failed === undefined ? u.scales.x.max : b.failed;
    const x0 = u.valToPos(b.held, "x", true), x1 = u.valToPos(hi, "x", true);
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = "rgba(255, 200, 0, 0.18)";
    ctx.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
    ctx.restore();
  }

  function chart(name, target, curve, xLabel, withBracket) {
    const slo = D.slo_lines.map((s) => curve.x.map(() => s.ms));
    const series = [{ label: xLabel },
      { label: "p50", stroke: "#2ca02c", width: 1.5, points: { show: true } },
      { label: "p99", stroke: "#d62728", width: 1.5, points: { show: true } }].concat(
      D.slo_lines.map((s) => ({ label: s.label, stroke: "#7f7f7f", dash: [6, 4], points: { show: false } })));
    charts[name] = new uPlot({
      width: width(), height: 320,
      scales: { x: { time: false } },
      axes: [{ label: xLabel }, { label: "ms", size: 80 }],
      hooks: withBracket ? { drawClear: [shade] } : {},
      series: series,
    }, [curve.x, curve.p50, curve.p99].concat(slo), document.getElementById(target));
  }
  chart("offered", "c-offered", D.offered, "offered req/s", true);
  chart("achieved", "c-achieved", D.achieved, "achieved req/s", false);

  const t = el("table"), head = el("tr");
  for (const c of ["step", "phase", "rate", "achieved", "p50 ms", "p99 ms", "errors", "verdict"]) head.appendChild(el("th", {}, c));
  t.appendChild(head);
  D.steps.forEach((s, i) => {
    const tr = el("tr");
    const verdict = (s.passed ? "holds" : "fails") + (s.generator_limited ? " (generator-limited)" : "");
    for (const v of [i + 1, s.phase, fmt(s.rate, 1), fmt(s.achieved_rps, 1), fmt(s.p50_ms, 3), fmt(s.p99_ms, 3), s.errors, verdict]) tr.appendChild(el("td", {}, v));
    t.appendChild(tr);
  });
  document.getElementById("steps").appendChild(t);
  window.barfast = { charts: charts, data: D, ready_ms: performance.now() };
  document.body.setAttribute("data-ready", "1");
})();
