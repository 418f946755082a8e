// barfast's HTML report: draws the report's data (the JSON above) with uPlot. Every chart takes
// the selected endpoint's data; the time charts share one x range (drag to zoom, double-click or
// "Whole run" to zoom out).
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("barfast-data").textContent);
  const ALL = "*";
  const charts = {};
  let selected = ALL;
  let zoom = null; // [min, max] seconds, or null for the whole run

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(digits === undefined ? 3 : digits);
    return String(v);
  }
  function width() { return Math.max(480, Math.min(1200, document.body.clientWidth - 16)); }

  function header() {
    const h = D.header, box = document.getElementById("header");
    box.appendChild(el("h1", {}, "barfast report: " + (h.url || "")));
    let line = h.mode + ", " + h.connections + " connections, " + h.workers + " worker(s), " +
      fmt(h.duration_s, 2) + " s, " + fmt(h.rps, 1) + " req/s";
    if (h.started_unix_s) line += ", started " + new Date(h.started_unix_s * 1000).toISOString();
    if (h.interrupted) line += " (interrupted: partial report)";
    box.appendChild(el("p", {}, line));
    const tags = Object.entries(h.tags || {});
    if (tags.length) box.appendChild(el("p", {}, "Tags: " + tags.map(([k, v]) => k + "=" + v).join(", ")));
    for (const w of h.warnings) box.appendChild(el("p", { class: "warn" }, "Warning: " + w));
  }

  const COLUMNS = [["endpoint", "endpoint"], ["weight", "weight"], ["completed", "requests"],
    ["rps", "req/s"], ["errors", "errors"], ["connect", "connect"], ["timeout", "timeout"],
    ["read", "read"], ["write", "write"], ["parse", "parse"], ["closed", "closed"],
    ["not_sent", "not sent"], ["checks_passed", "checks ok"], ["checks_failed", "checks failed"],
    ["p50_ms", "p50 ms"], ["p90_ms", "p90 ms"], ["p99_ms", "p99 ms"], ["p99.9_ms", "p99.9 ms"],
    ["max_ms", "max ms"]];

  function table() {
    const t = el("table", { id: "endpoints" }), head = el("tr");
    for (const [, label] of COLUMNS) head.appendChild(el("th", {}, label));
    t.appendChild(head);
    for (const row of D.table) {
      const tr = el("tr", { "data-endpoint": row.endpoint });
      for (const [key] of COLUMNS) {
        const v = key === "endpoint" && row.endpoint === ALL ? "all (*)" : row[key];
        tr.appendChild(el("td", {}, fmt(v, key === "rps" ? 1 : 3)));
      }
      t.appendChild(tr);
    }
    document.getElementById("table").appendChild(t);
  }

  function counts(id, obj, label) {
    const box = document.getElementById(id);
    box.textContent = "";
    const entries = Object.entries(obj || {});
    if (!entries.length) { box.appendChild(el("p", {}, "none")); return; }
    const t = el("table"), head = el("tr");
    head.appendChild(el("th", {}, label));
    head.appendChild(el("th", {}, "count"));
    t.appendChild(head);
    for (const [k, n] of entries) {
      const tr = el("tr");
      tr.appendChild(el("td", {}, k));
      tr.appendChild(el("td", {}, n));
      t.appendChild(tr);
    }
    box.appendChild(t);
  }

  // The time charts (one x axis: seconds since the start of the load).
  function timeNames() { return Object.keys(charts).filter((n) => n !== "spectrum"); }

  // Zoom: a drag on any time chart sets every time chart's x range.
  let syncing = false;
  function onScale(u, key) {
    if (key !== "x" || syncing) return;
    const mn = u.scales.x.min, mx = u.scales.x.max;
    zoom = [mn, mx];
    syncing = true;
    for (const name of timeNames()) {
      const c = charts[name];
      if (c && c !== u) c.setScale("x", { min: mn, max: mx });
    }
    syncing = false;
  }
  function unzoom() {
    zoom = null;
    syncing = true;
    for (const name of timeNames()) {
      const c = charts[name];
      if (!c || !c.data[0].length) continue;
      c.setScale("x", { min: c.data[0][0], max: c.data[0][c.data[0].length - 1] });
    }
    syncing = false;
  }

  function timeChart(name, target, series, data, yLabel) {
    if (charts[name]) charts[name].destroy();
    const opts = {
      width: width(), height: 280,
      scales: { x: { time: false } },
      axes: [{ label: "second" }, { size: 80, label: yLabel }],
      cursor: { drag: { x: true, y: false } },
      hooks: { setScale: [onScale] },
      series: [{ label: "second" }].concat(series),
    };
    const u = new uPlot(opts, data, document.getElementById(target));
    charts[name] = u;
    if (zoom) { syncing = true; u.setScale("x", { min: zoom[0], max: zoom[1] }); syncing = false; }
    return u;
  }

  function draw() {
    const s = D.series[selected] || D.series[ALL];
    timeChart("requests", "c-requests", [
      { label: "requests", stroke: "#2a6fdb", width: 1.5 },
      { label: "errors", stroke: "#d62728", width: 1.5 },
    ], [s.t, s.requests, s.errors]);
    timeChart("latency", "c-latency", [
      { label: "p50", stroke: "#2ca02c" }, { label: "p90", stroke: "#ff7f0e" },
      { label: "p99", stroke: "#d62728" }, { label: "max", stroke: "#7f7f7f", dash: [4, 4] },
    ], [s.t, s.p50, s.p90, s.p99, s.max]);
    const sec = document.getElementById("s-open");
    if (D.open) {
      // per endpoint: its own corrected and uncorrected p99 and send lag (open loop)
      const o = D.open[selected] || D.open[ALL];
      document.getElementById("open-note").textContent =
        selected === ALL ? "All endpoints." : "Endpoint " + selected + ".";
      timeChart("open", "c-open", [
        { label: "p99 corrected", stroke: "#d62728", width: 1.5 },
        { label: "p99 uncorrected", stroke: "#2a6fdb", width: 1.5 },
        { label: "send lag p99", stroke: "#9467bd", dash: [4, 4] },
      ], [o.t, o.corrected, o.uncorrected, o.send_lag]);
    } else {
      sec.style.display = "none";
    }
    const sp = D.spectrum[selected] || D.spectrum[ALL];
    if (charts.spectrum) charts.spectrum.destroy();
    charts.spectrum = new uPlot({
      width: width(), height: 300,
      scales: { x: { time: false, distr: 3, log: 10 } },
      axes: [{ label: "1/(1-q): 10 = p90, 100 = p99, 1000 = p99.9", values: (u, v) => v.map((x) => x >= 1 ? (100 * (1 - 1 / x)).toPrecision(6).replace(/\.?0+$/, "") + "%" : "") }, { label: "ms", size: 80 }],
      series: [{ label: "1/(1-q)" }, { label: "latency ms", stroke: "#2a6fdb", width: 1.5 }],
    }, [sp.x, sp.y], document.getElementById("c-spectrum"));
    counts("status", D.status[selected], "status");
    counts("errors", D.errors[selected], "kind");
    for (const tr of document.querySelectorAll("#endpoints tr[data-endpoint]")) {
      tr.classList.toggle("selected", tr.getAttribute("data-endpoint") === selected);
    }
  }

  function select(name) {
    selected = D.series[name] ? name : ALL;
    document.getElementById("endpoint").value = selected;
    draw();
  }

  // Target metrics: one chart per scraped series name (a line per label set); the same for
  // every endpoint (the target's metrics are not per endpoint), drawn once.
  const PALETTE = ["#2a6fdb", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  function targetMetrics() {
    const sec = document.getElementById("s-target");
    if (!D.target) { sec.style.display = "none"; return; }
    const box = document.getElementById("target-scrapes");
    for (const t of D.target.targets) {
      const fails = Object.entries(t.failures || {}).map(([r, n]) => r + " x" + n).join(", ");
      box.appendChild(el("p", { class: t.failed ? "warn" : "" }, t.url + ": " + t.scrapes +
        " scrapes, " + t.failed + " failed" + (fails ? " (" + fails + ")" : "") +
        (t.series_dropped ? ", " + t.series_dropped + " series not kept" : "")));
    }
    const holder = document.getElementById("c-target");
    D.target.charts.forEach((c, k) => {
      const div = el("div", { class: "chart", id: "c-target-" + k });
      holder.appendChild(el("h3", {}, c.name + (c.unit ? " (rate " + c.unit + ")" : "") + " - " + c.url));
      holder.appendChild(div);
      timeChart("target-" + k, div.id, c.lines.map((l, i) => ({
        label: l.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false,
      })), [c.t].concat(c.lines.map((l) => l.values)), c.unit);
    });
  }

  header();
  table();
  targetMetrics();
  const pick = document.getElementById("endpoint");
  for (const n of D.names) pick.appendChild(el("option", { value: n }, n === ALL ? "all endpoints" : n));
  pick.addEventListener("change", () => select(pick.value));
  document.getElementById("unzoom").addEventListener("click", unzoom);
  for (const tr of document.querySelectorAll("#endpoints tr[data-endpoint]")) {
    tr.addEventListener("click", () => select(tr.getAttribute("data-endpoint")));
  }
  draw();
  // For tests and tools: the charts drawn and the filter.
  // ready_ms: from navigation start to every chart drawn (benchmarks/bench_reports.py).
  window.barfast = { charts: charts, select: select, data: D, ready_ms: performance.now() };
  document.body.setAttribute("data-ready", "1");
})();
