"""The terminal summary, in wrk's spirit: what ran, latency, throughput, statuses, errors, warnings.

`render(report, latency)` takes only the report dict (result.Merger.report()); with latency=True it
prints the full percentile spectrum of every view and, for the main view, the HdrHistogram percentile
distribution (wrk2's "Detailed Percentile spectrum" layout), decoded from the report's own histogram.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

from barfast.config import NS_PER_MS

SPECTRUM = (50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0)
SHORT = (50.0, 75.0, 90.0, 99.0)


def fmt_ms(v: float) -> str:
    """Milliseconds -> a short human unit (wrk prints us/ms/s)."""
    if v < 1.0:
        return f"{v * 1000:.2f}us"
    if v < 1000.0:
        return f"{v:.2f}ms"
    if v < 60_000.0:
        return f"{v / 1000:.2f}s"
    return f"{v / 60_000:.2f}m"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024.0 or unit == "GB":
            return f"{n:.2f}{unit}" if unit != "B" else f"{n:.0f}B"
        n /= 1024.0
    return f"{n:.2f}GB"  # pragma: no cover


def fmt_pct(p: float) -> str:
    return f"{p:g}%"


def _hist(report: dict[str, Any], view: str) -> HdrHistogram | None:
    blob = (report.get("histogram") or {}).get(view)
    if not blob:
        return None
    return HdrHistogram.decode(blob.encode("ascii") if isinstance(blob, str) else blob)


def _spectrum(
    h: HdrHistogram | None, summary: dict[str, Any], pcts: tuple[float, ...]
) -> list[str]:
    lines = []
    vals: dict[float, float] = {}
    if h is not None and h.get_total_count():
        raw = h.get_percentile_to_value_dict(list(pcts))
        vals = {p: raw[p] / NS_PER_MS for p in pcts}
    for p in pcts:
        v = vals.get(p)
        if v is None:
            v = float(summary.get(f"p{p:g}", summary.get("max", 0.0) if p == 100.0 else 0.0))
        lines.append(f"    {fmt_pct(p):>8} {fmt_ms(v):>10}")
    return lines


def _distribution(h: HdrHistogram) -> list[str]:
    """HdrHistogram's percentile distribution (5 ticks per half distance), values in ms."""
    out = [
        "  Detailed percentile spectrum:",
        f"    {'Value(ms)':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>16}",
    ]
    for it in h.get_percentile_iterator(5):
        value = it.value_iterated_to / NS_PER_MS
        level = it.percentile_level_iterated_to
        inv = f"{1 / (1 - level / 100):16.2f}" if level < 100 else f"{'inf':>16}"
        out.append(
            f"    {value:12.6f} {level / 100:14.6f} {it.total_count_to_this_value:10d} {inv}"
        )
    return out


def _view(title: str, summary: dict[str, Any], h: HdrHistogram | None, latency: bool) -> list[str]:
    lines = [f"  {title}"]
    lines.append(
        f"    {'Avg':>10} {'Stdev':>10} {'Max':>10} {'Min':>10}   (n={summary.get('count', 0)})"
    )
    lines.append(
        f"    {fmt_ms(summary['mean']):>10} {fmt_ms(summary['stdev']):>10} "
        f"{fmt_ms(summary['max']):>10} {fmt_ms(summary['min']):>10}"
    )
    lines += _spectrum(h, summary, SPECTRUM if latency else SHORT)
    return lines


def render(report: dict[str, Any], latency: bool = False) -> str:
    cfg = report.get("config", {})
    out: list[str] = []
    dur = report.get("duration_s", 0.0)
    open_loop = bool(cfg.get("open_loop"))
    head = f"Running {dur:.2f}s test @ {cfg.get('url', '?')}"
    if report.get("interrupted"):
        head += "  (interrupted: partial report)"
    if report.get("data_exhausted"):
        names = ", ".join(report["data_exhausted"])
        head += f"  (stopped: unique rows of {names} used up)"
    out.append(head)
    mode = "closed loop" if cfg.get("naps", True) else "closed loop, naps off"
    unit = "iterations/s" if cfg.get("flows") else "req/s"  # a flow's rate counts iterations
    if open_loop:
        if cfg.get("rate"):
            mode = f"open loop, {cfg['rate']:g} {unit} {cfg.get('arrival', 'constant')}"
        else:
            stages = ",".join(s.get("text", "") for s in cfg.get("stages", []))
            mode = f"open loop, stages {stages}, {cfg.get('arrival', 'constant')}"
    w = cfg.get("workers", 1)
    conns = "virtual users (one per connection)" if cfg.get("flows") else "connections"
    out.append(
        f"  {w} worker{'s' if w != 1 else ''} and {cfg.get('connections', '?')} {conns}, {mode}"
    )
    main_h = _hist(report, "latency")
    if open_loop:
        out += _view(
            "Latency (corrected: from the intended send time)",
            report["latency_ms"],
            main_h,
            latency,
        )
        out += _view(
            "Latency (uncorrected: from the actual send)",
            report["latency_uncorrected_ms"],
            _hist(report, "uncorrected") if latency else None,
            latency,
        )
        out += _view(
            "Send lag (actual send - intended send)",
            report["send_lag_ms"],
            _hist(report, "send_lag") if latency else None,
            latency,
        )
    else:
        out += _view("Latency", report["latency_ms"], main_h, latency)
    if latency and main_h is not None and main_h.get_total_count():
        out += _distribution(main_h)
    out += _connect_ttfb(report)
    req = report["requests"]
    tr = report["transfer"]
    out.append(
        f"  {req['completed']} requests in {dur:.2f}s, {fmt_bytes(tr['bytes_rx'])} read"
        + (f", {req['errors']} errors" if req.get("errors") else "")
    )
    if req.get("in_flight") or req.get("not_sent"):
        out.append(
            f"  in flight at the end: {req.get('in_flight', 0)}, not sent: {req.get('not_sent', 0)}"
        )
    out.append(f"Requests/sec: {report['rps']:>12.2f}")
    out.append(f"Transfer/sec: {fmt_bytes(tr['rx_per_s']):>12}")
    status = report.get("status") or {}
    out.append(
        "Status: " + (", ".join(f"{code} {n}" for code, n in status.items()) if status else "none")
    )
    errors = report.get("errors") or {}
    if errors:
        detail = report.get("errors_errno") or {}
        parts = []
        for kind, n in errors.items():
            sub = detail.get(kind) or {}
            extra = f" ({', '.join(f'{e} {c}' for e, c in sub.items())})" if sub else ""
            parts.append(f"{kind} {n}{extra}")
        out.append("Errors: " + ", ".join(parts))
    else:
        out.append("Errors: none")
    out += _endpoints(report)
    out += _flows(report)
    samples = report.get("samples", {})
    line = f"Samples dropped by ring: {samples.get('dropped_by_ring', 0)}"
    if samples.get("failures_without_sample"):
        line += f" (and {samples['failures_without_sample']} failures counted without samples)"
    out.append(line)
    gen = report.get("generator", {})
    if gen.get("cpu_us_per_request") is not None:
        # An open loop's pacing spin (polling for sends not yet due, chosen for punctual sends)
        # is part of that CPU: say how much, so the per-request figure is not read as work.
        rows = report.get("workers") or []
        spin = sum(r.get("cpu_spin_s", 0.0) for r in rows)
        # A closed loop with naps on (nap.pxi) read part of its responses late and timed them by
        # their kernel receive stamps: say for how much of the run.
        el = sum(r.get("elapsed_s", 0.0) for r in rows)
        nap = sum(r.get("nap_s", 0.0) for r in rows) / el if el > 0 else 0.0
        out.append(
            f"Generator CPU: {gen['cpu_user_s']:.2f}s user, {gen['cpu_sys_s']:.2f}s sys, "
            f"{gen['cpu_us_per_request']:.2f}us per request"
            + (f" (incl. {spin:.2f}s of pacing spin)" if spin >= 0.005 else "")
            + (f" (naps on {100 * nap:.0f}% of the run)" if nap >= 0.01 else "")
        )
        if gen.get("wakeups_per_request") is not None:
            # Each sleep of a worker's threads is a wake-up paid on its CPU: what an open loop
            # pays per send, and what makes CPU per request rise as the load gets sparser.
            out.append(f"Generator wake-ups: {gen['wakeups_per_request']:.2f} per request")
    out += _workers(report.get("workers") or [])
    for wmsg in gen.get("warnings", []):
        out.append(f"Warning: {wmsg}")
    out += thresholds_lines(report.get("thresholds") or [])
    out += target_metrics_lines(report.get("target_metrics"))
    return "\n".join(out) + "\n"


def target_metrics_lines(tm: dict[str, Any] | None) -> list[str]:
    """One line per scraped URL: scrapes, failures by reason, series kept (metrics/scrape.py)."""
    if not tm:
        return []
    out = []
    for t in tm.get("targets") or []:
        kept = sum(1 for s in tm.get("series") or [] if s.get("url") == t["url"])
        line = f"Target metrics {t['url']}: {t['scrapes']} scrapes, {t['failed']} failed"
        if t.get("failures"):
            line += " (" + ", ".join(f"{r} x{n}" for r, n in t["failures"].items()) + ")"
        line += f", {kept} series"
        if t.get("series_dropped"):
            line += f" ({t['series_dropped']} more not kept: a memory bound)"
        out.append(line)
    return out


def thresholds_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per threshold: ✓/✗, the expression, the measured value (and a windowed abort)."""
    if not rows:
        return []
    bad = sum(1 for r in rows if not r["passed"])
    out = [f"Thresholds: {len(rows) - bad} passed, {bad} failed"]
    width = max(len(r["threshold"]) for r in rows)
    for r in rows:
        mark = "✓" if r["passed"] else "✗"
        line = f"  {mark} {r['threshold']:<{width}}  {r['metric']} = {r['measured_text']}"
        ab = r.get("aborted")
        if ab:
            line += (
                f"; {ab['measured_text']} over the {ab['window_s']:g}s before {ab['at_s']:g}s "
                "stopped the run"
            )
        out.append(line)
    return out


def _connect_ttfb(report: dict[str, Any]) -> list[str]:
    """One line: connect time (per connection that carried a request) and time to first byte
    (per completed response) of the totals. Shown for a single URL too: it tells a slow latency's
    connection set-up (accept backlog, SYN retries) from the server's think time."""
    conn, ttfb = report.get("connect_ms") or {}, report.get("ttfb_ms") or {}
    if not conn.get("count") and not ttfb.get("count") and not report.get("tls"):
        return []
    parts = []
    for title, s in (("Connect", conn), ("TTFB", ttfb)):
        if s.get("count"):
            parts.append(
                f"{title} p50 {fmt_ms(s['p50'])}, p99 {fmt_ms(s['p99'])}, "
                f"max {fmt_ms(s['max'])} (n={s['count']})"
            )
    out = ["  " + "; ".join(parts)]
    tls, hs = report.get("tls"), report.get("tls_ms") or {}
    if tls:
        line = f"  TLS handshakes {tls['handshakes']} ({tls['resumed']} resumed)"
        if hs.get("count"):
            line += f", p50 {fmt_ms(hs['p50'])}, p99 {fmt_ms(hs['p99'])}, max {fmt_ms(hs['max'])}"
        fails = tls.get("failures") or {}
        if fails:
            line += "; failures: " + ", ".join(f"{why} x{n}" for why, n in fails.items())
        elif tls.get("failure"):
            line += f"; first failure: {tls['failure']}"
        out.append(line)
    return out


def _endpoints(report: dict[str, Any]) -> list[str]:
    """One row per endpoint of a scenario's mix, then the checks over all of them."""
    eps = report.get("endpoints") or {}
    if not eps:
        return []
    total = sum(e["requests"]["completed"] for e in eps.values()) or 1
    width = max(8, *(len(n) for n in eps))
    out = [
        f"  {'endpoint':<{width}} {'weight':>7} {'share':>7} {'requests':>10} {'req/s':>10}"
        f" {'errors':>7} {'checks failed':>14} {'p50':>10} {'p99':>10} {'max':>10}"
    ]
    flows = bool(report.get("flows"))
    for name, e in eps.items():
        r = e["requests"]
        checks = e.get("checks")
        weight = "-" if flows else f"{e['weight']:g}"  # a flow's steps: the flows have weights
        failed = f"{checks['failed']}" if checks else "-"
        lat = e.get("latency_ms")  # null beyond the per-endpoint histogram bound
        pcts = [fmt_ms(lat[k]) if lat and lat.get("count") else "-" for k in ("p50", "p99", "max")]
        out.append(
            f"  {name:<{width}} {weight:>7} {100 * r['completed'] / total:>6.1f}%"
            f" {r['completed']:>10} {e['rps']:>10.1f} {r['errors']:>7} {failed:>14}"
            f" {pcts[0]:>10} {pcts[1]:>10} {pcts[2]:>10}"
        )
    c = report.get("checks") or {}
    if c.get("passed", 0) + c.get("failed", 0):
        n = c["passed"] + c["failed"]
        out.append(
            f"Checks: {c['passed']} passed, {c['failed']} failed ({100 * c['passed'] / n:.2f}% passed)"
        )
        for name, e in eps.items():  # the checks that failed, each with its count
            for ck in (e.get("checks") or {}).get("each", []):
                if ck["failed"]:
                    long_ = f" ({ck['body_too_long']} with a body past max_body_for_checks)"
                    out.append(
                        f"  {name}: {ck['name']}: {ck['failed']} failed"
                        + (long_ if ck["body_too_long"] else "")
                    )
    return out


def _flows(report: dict[str, Any]) -> list[str]:
    """One row per flow: iterations, their rate and duration, failures; then failed captures."""
    flows = {k: v for k, v in (report.get("flows") or {}).items() if not k.startswith("_")}
    if not flows:
        return []
    width = max(8, *(len(n) for n in flows))
    out = [
        f"  {'flow':<{width}} {'weight':>7} {'iterations':>10} {'iter/s':>10} {'failed':>7}"
        f" {'running':>8} {'p50':>10} {'p99':>10} {'max':>10}"
    ]
    for name, f in flows.items():
        it = f["iterations"]
        d = f["iteration_ms"]
        pcts = [fmt_ms(d[k]) if d.get("count") else "-" for k in ("p50", "p99", "max")]
        out.append(
            f"  {name:<{width}} {f['weight']:>7g} {it['completed']:>10} {f['iterations_per_s']:>10.1f}"
            f" {it['failed']:>7} {it['in_progress']:>8} {pcts[0]:>10} {pcts[1]:>10} {pcts[2]:>10}"
        )
    for name, f in flows.items():
        for c in f["captures"]:
            if c["failed"]:
                why = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in c["reasons"].items())
                out.append(
                    f"  {name}.{c['step']}: capture {c['var']}: {c['failed']} failed ({why})"
                )
        if f["steps_skipped"]:
            out.append(
                f"  {name}: {f['steps_skipped']} steps skipped (a variable was not captured)"
            )
        if f["cookies_dropped"]:
            out.append(f"  {name}: {f['cookies_dropped']} cookies dropped (the jar was full)")
    bulk = (report.get("flows") or {}).get("_bulk_failed")
    if bulk:
        out.append(f"  {bulk['iterations']} iterations failed in bulk (no connection took them)")
    return out


def _workers(rows: list[dict[str, Any]]) -> list[str]:
    """One line per worker when there is more than one, or when one was lost: the parts the merged
    totals are the sum of, so a reader can check them and see which host did what."""
    if len(rows) < 2 and not any(r.get("lost") for r in rows):
        return []
    out = ["Workers:"]
    for r in rows:
        if r.get("pod"):  # Kubernetes: the pod's name says where it ran
            where = f"pod {r['pod']}"
        else:
            where = f"{r['host']} pid {r['pid']}" if r.get("host") else "local"
        state = "LOST" if r.get("lost") else r.get("state", "done")
        out.append(
            f"  {r.get('worker', '?'):>3}  {where:<24} {state:<6} {r.get('completed', 0):>10} completed"
            f"  {r.get('errors', 0):>6} errors  {r.get('rps', 0.0):>11.1f} req/s"
            f"  CPU {_share(r.get('cpu_share'))}{_spin(r)}{_wait(r)}"
        )
    return out


def _share(share: float | None) -> str:
    """A CPU share; None (a run too short to measure one, result.CPU_SHARE_MIN_S) shows as '-'."""
    return "   -" if share is None else f"{100 * share:3.0f}%"


def _wait(row: dict[str, Any]) -> str:
    """Time the worker was runnable while another task held its CPU (shown from 1 %)."""
    share = row.get("cpu_wait_share", 0.0)
    return f", waited {100 * share:.0f}% for a CPU" if share >= 0.01 else ""


def _spin(row: dict[str, Any]) -> str:
    """An open loop's pacing spin is CPU it chose to spend: shown apart from the busy part."""
    spin, el = row.get("cpu_spin_s", 0.0), row.get("elapsed_s", 0.0)
    if not spin or el <= 0:
        return ""
    return (
        f" ({_share(row.get('cpu_busy_share')).strip()} busy, {100 * spin / el:.0f}% pacing spin)"
    )
