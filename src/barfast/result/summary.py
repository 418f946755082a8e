"""The report dict (schema barfast.report/1) of a Merger: totals, latency summaries, the per-second
series, per-endpoint results of the same shape, per-worker rows, the encoded histograms, and the
generator's self-check warnings.

The self-check says when a figure may describe the generator rather than the server: a worker
that used most of its CPU, one that waited for a CPU another task held (schedstat), an open loop
whose requests left late (send lag), samples dropped or clamped, snapshots refused, workers lost.

Why ~590 lines in one module: it is the one definition of the report's shape (barfast.report/1):
totals, endpoints, flows, workers, warnings and the config block are built side by side so the
schema reads in one place; the arithmetic lives in merge.py and hist.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from barfast.config import NS_PER_S, RunConfig, format_duration
from barfast.engine.aggregate import ENDPOINT_HISTS_MAX, ENDPOINT_VIEWS, HIST_VIEWS, new_histogram
from barfast.result.hist import latency_summary
from barfast.result.intervals import ENCODING as INTERVAL_ENCODING
from barfast.result.meta import redact_headers

if TYPE_CHECKING:
    from barfast.result.merge import Merger, WorkerState

INTERVAL_VIEWS = ("latency", "uncorrected", "send_lag")  # merge.INTERVAL_VIEWS

SCHEMA = "barfast.report/1"
SEND_LAG_WARN_MS = 1.0
CPU_SATURATED = 0.9
CPU_WAIT_WARN = 0.1  # a worker runnable but off its CPU this share of the run: it was starved
CPU_SHARE_MIN_S = 0.1  # CPU shares need at least this long an interval (worker_row)
COUNTER_KEYS = ("started", "completed", "errors", "in_flight", "not_sent")


def build_report(m: Merger, config_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON report dict (schema barfast.report/1) of everything `m` has merged; report/json.py
    documents the fields."""
    open_loop = bool(config_info.get("open_loop"))
    tot = m.totals()
    duration_ns = max((w.elapsed_ns for w in m.workers.values()), default=0)
    duration_s = duration_ns / NS_PER_S
    completed = tot.get("completed", 0)
    status: dict[str, int] = {}
    errors: dict[str, int] = {}
    errno_detail: dict[str, dict[str, int]] = {}
    for w in m.workers.values():
        for code, n in w.status.items():
            status[str(code)] = status.get(str(code), 0) + n
        for kind, n in w.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        for kind, per in w.sys_errno.items():
            d = errno_detail.setdefault(kind, {})
            for e, n in per.items():
                name = errno_name(e)
                d[name] = d.get(name, 0) + n
    # Closed loop: intended == send, so the "actual send" view is the uncorrected histogram.
    main = m.hists["latency"] if open_loop else m.hists["uncorrected"]
    bytes_rx, bytes_tx = tot.get("bytes_rx", 0), tot.get("bytes_tx", 0)
    dropped = sum(
        max(
            w.ring.get("dropped", 0),
            w.ring.get("seq_gaps", 0),
            w.counters.get("ring_dropped", 0),
        )
        for w in m.workers.values()
    )
    bulk = sum(w.counters.get("bulk_failed", 0) for w in m.workers.values())
    cpu_user = sum(w.cpu.get("user_s", 0.0) for w in m.workers.values())
    cpu_sys = sum(w.cpu.get("sys_s", 0.0) for w in m.workers.values())
    wakeups = sum(int(w.cpu.get("wakeups", 0)) for w in m.workers.values())
    has_wakeups = any("wakeups" in w.cpu for w in m.workers.values())  # older workers: no
    rep: dict[str, Any] = {
        "schema": SCHEMA,
        "config": dict(config_info),
        "interrupted": any(w.interrupted for w in m.workers.values()),
        # unique feeders whose rows ran out (the run stopped there, by design, not by failure)
        **_data_exhausted(m, config_info),
        "duration_s": round(duration_s, 6),
        "requests": {k: int(tot.get(k, 0)) for k in COUNTER_KEYS},
        "status": dict(sorted(status.items())),
        "errors": dict(sorted(errors.items())),
        "errors_errno": errno_detail,
        "rps": round(completed / duration_s, 3) if duration_s > 0 else 0.0,
        "transfer": {
            "bytes_rx": int(bytes_rx),
            "bytes_tx": int(bytes_tx),
            "rx_per_s": round(bytes_rx / duration_s, 3) if duration_s > 0 else 0.0,
            "tx_per_s": round(bytes_tx / duration_s, 3) if duration_s > 0 else 0.0,
        },
        "latency_ms": latency_summary(main),
        # once per connection that carried a request: connect() to established
        "connect_ms": latency_summary(m.hists["connect"]),
        # completed responses: request sent to the response's first byte
        "ttfb_ms": latency_summary(m.hists["ttfb"]),
    }
    tls_failure = next((w.tls_failure for w in m.workers.values() if w.tls_failure), "")
    if tot.get("tls_full", 0) or tot.get("tls_resumed", 0) or tls_failure:
        # https: handshakes in full and resumed, the handshake time (once per connection, on
        # its first request), and the first TLS failure's reason
        reasons: dict[str, int] = {}
        for w in m.workers.values():
            for why, n in w.tls_reasons.items():
                reasons[why] = reasons.get(why, 0) + n
        rep["tls"] = {
            "handshakes": int(tot.get("tls_full", 0) + tot.get("tls_resumed", 0)),
            "resumed": int(tot.get("tls_resumed", 0)),
            "failure": tls_failure,
            # every TLS failure (the `tls` errors, and handshakes that failed while no request
            # waited) by reason, most frequent first
            "failures": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        rep["tls_ms"] = latency_summary(m.hists["tls"])
    hist_out: dict[str, Any] = {
        "encoding": "HdrHistogram V2 compressed histoblob, base64 (hdrh HdrHistogram.decode)",
        "units": "ns",
        "layout": {"lowest": 1, "highest": 3600 * NS_PER_S, "significant_figures": 3},
        "latency": _text(main.encode()),
        "connect": _text(m.hists["connect"].encode()),
        "ttfb": _text(m.hists["ttfb"].encode()),
    }
    if "tls" in rep:
        hist_out["tls"] = _text(m.hists["tls"].encode())
    # flows: a step after a think is due at the think's end, in a closed loop too (user.pxi)
    if open_loop or config_info.get("flows"):
        rep["latency_uncorrected_ms"] = latency_summary(m.hists["uncorrected"])
        rep["send_lag_ms"] = latency_summary(m.hists["send_lag"])
        hist_out["uncorrected"] = _text(m.hists["uncorrected"].encode())
        hist_out["send_lag"] = _text(m.hists["send_lag"].encode())
    rep["histogram"] = hist_out
    rep["series"] = m.series()
    # Per second, the interval histograms every other output is rendered from (report/ modules):
    # closed loop keeps the one latency view (uncorrected is the same there), open loop all three.
    views = INTERVAL_VIEWS if open_loop else ("latency",)
    blobs = m.interval_blobs()
    rep["intervals"] = {
        "encoding": INTERVAL_ENCODING,
        "units": "ns",
        "period_s": 1,
        "views": list(views),
        "seconds": [
            {"second": sec, **{v: b[v] for v in views if v in b}} for sec, b in blobs.items()
        ],
    }
    clamped = {name: sum(w.clamped.get(name, 0) for w in m.workers.values()) for name in HIST_VIEWS}
    rep["samples"] = {
        "aggregated": sum(w.samples for w in m.workers.values()),
        "dropped_by_ring": int(dropped),
        # open loop: failed backlog entries counted without a sample each (loop_fail_backlog)
        "failures_without_sample": int(bulk),
        "clamped_to_1h": clamped,
        "snapshots_rejected": m.rejected,
    }
    rep["workers"] = [worker_row(w) for w in sorted(m.workers.values(), key=lambda w: w.worker)]
    rep["workers_lost"] = m.lost_workers
    if config_info.get("endpoints"):
        rep["endpoints"], rep["checks"] = _endpoints(
            m, rep, config_info["endpoints"], duration_s, open_loop
        )
    if config_info.get("flows"):
        rep["flows"] = _flows(m, config_info, duration_s)
    rep["generator"] = {
        "cpu_user_s": round(cpu_user, 6),
        "cpu_sys_s": round(cpu_sys, 6),
        "cpu_us_per_request": round((cpu_user + cpu_sys) * 1e6 / completed, 3)
        if completed
        else None,
        # voluntary context switches (sleeps, so wake-ups) of the workers per completed request
        "wakeups_per_request": round(wakeups / completed, 4) if completed and has_wakeups else None,
        "warnings": _warnings(m, rep, open_loop, dropped, clamped),
    }
    return rep


def _endpoints(
    m: Merger, rep: dict[str, Any], specs: list[dict[str, Any]], duration_s: float, open_loop: bool
) -> tuple[dict[str, Any], dict[str, int]]:
    """Per endpoint, the totals' shape: requests (exact engine counters, all workers), status and
    error kinds, rate, latency, connect and ttfb summaries, check results, a per-second series;
    and the checks over all endpoints. A failed check is not an error: the response is counted
    completed and the failure apart."""
    totals = m.endpoint_totals()
    figures = _endpoint_figures(m, rep, len(specs), open_loop)
    out: dict[str, Any] = {}
    passed = failed = 0
    for i, spec in enumerate(specs):
        t = totals[i] if i < len(totals) else {}
        done, bad = int(t.get("completed", 0)), int(t.get("check_failed", 0))
        fig = figures[i]
        row: dict[str, Any] = {
            "weight": spec["weight"],
            "requests": {k: int(t.get(k, 0)) for k in ("started", "completed", "errors")},
            "status": fig["status"],
            "errors": fig["errors"],
            "rps": round(done / duration_s, 3) if duration_s > 0 else 0.0,
            **{k: fig[k] for k in ("latency_ms", "connect_ms", "ttfb_ms")},
            # https: the handshake time of the connections this endpoint's requests opened
            **({"tls_ms": fig["tls_ms"]} if (fig.get("tls_ms") or {}).get("count") else {}),
            # open loop: this endpoint's latency from the actual send, and its send lag
            **{k: fig[k] for k in ("latency_uncorrected_ms", "send_lag_ms") if k in fig},
        }
        if spec.get("checks"):
            row["checks"] = {
                "names": spec["checks"],
                "passed": done - bad,
                "failed": bad,
                # each check: the responses it failed, and of those the ones whose body was
                # longer than max_body_for_checks (the check could not see all of it)
                "each": [
                    {
                        "name": name,
                        "failed": int(t.get(f"check_failed_{k}", 0)),
                        "body_too_long": int(t.get(f"check_too_long_{k}", 0)),
                    }
                    for k, name in enumerate(spec["checks"])
                ],
            }
            passed += done - bad
            failed += bad
        row["series"] = fig["series"]
        row["histogram"] = fig["histogram"]
        row["intervals"] = fig["intervals"]
        out[spec["name"]] = row
    return out, {"passed": passed, "failed": failed}


def _flows(m: Merger, config_info: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """Per flow: iterations (exact engine counters, all workers), their duration (the flow's
    slot after the endpoints: one record per iteration that ran, merged like an endpoint's
    latency), captures by outcome, steps skipped, cookies dropped, and a per-second series."""
    totals = m.endpoint_totals()
    series = m.endpoint_series()
    base = len(config_info.get("endpoints", []))
    bulk = sum(int(w.counters.get("iterations_bulk_failed", 0)) for w in m.workers.values())
    out: dict[str, Any] = {}
    for i, spec in enumerate(config_info["flows"]):
        slot = base + i
        t = totals[slot] if slot < len(totals) else {}
        sums = m.endpoints.get(slot)
        hist = sums.hists.get("latency") if sums is not None else None
        started = int(t.get("iterations_started", 0))
        completed = int(t.get("iterations_completed", 0))
        failed = int(t.get("iterations_failed", 0))
        caps = []
        for j, (step, var, kind) in enumerate(spec["captures"]):
            reasons = {
                r: int(t.get(f"cap_{j}_{r}", 0))
                for r in CAPTURE_FAILURES
                if t.get(f"cap_{j}_{r}", 0)
            }
            caps.append(
                {
                    "step": step,
                    "var": var,
                    "kind": kind,
                    "ok": int(t.get(f"cap_{j}_ok", 0)),
                    "failed": sum(reasons.values()),
                    "reasons": reasons,
                }
            )
        out[spec["name"]] = {
            "weight": spec["weight"],
            "steps": spec["steps"],
            "iterations": {
                "started": started,
                "completed": completed,
                "failed": failed,
                # begun and neither completed nor failed when the run stopped (a deadline)
                "in_progress": max(0, started - completed - failed),
            },
            "iterations_per_s": round(completed / duration_s, 3) if duration_s > 0 else 0.0,
            # start (open loop: its schedule time) to the end of its last step
            "iteration_ms": latency_summary(hist if hist is not None else new_histogram()),
            "captures": caps,
            "captures_failed": sum(c["failed"] for c in caps),
            "steps_skipped": int(t.get("steps_skipped", 0)),
            "cookies_dropped": int(t.get("cookies_dropped", 0)),
            "series": [
                {
                    "second": p["second"],
                    "iterations": p["requests"],
                    "p50_ms": p["p50_ms"],
                    "p99_ms": p["p99_ms"],
                    "max_ms": p["max_ms"],
                }
                for p in series.get(slot, [])
            ],
            "histogram": _text(hist.encode()) if hist is not None else None,
        }
    if bulk:
        # open loop, a rate far beyond the connections: entries failed in bulk, no flow each
        out["_bulk_failed"] = {"iterations": bulk}
    return out


def _endpoint_figures(
    m: Merger, rep: dict[str, Any], n: int, open_loop: bool
) -> list[dict[str, Any]]:
    """Per endpoint: status, errors (by kind), latency/connect/ttfb summaries and the series.

    One endpoint: its figures are the totals (the workers keep nothing per endpoint then). Several:
    they come from the samples (merge.py); an endpoint from ENDPOINT_HISTS_MAX on has no histograms
    of its own, so its summaries are null (and its series' p99_ms)."""
    if n == 1:
        has_latency = {p["second"] for p in rep["intervals"]["seconds"] if "latency" in p}
        return [
            {
                **{k: rep[k] for k in ("status", "errors", "latency_ms", "connect_ms", "ttfb_ms")},
                **(
                    {k: rep[k] for k in ("latency_uncorrected_ms", "send_lag_ms")}
                    if open_loop
                    else {}
                ),
                "tls_ms": rep.get("tls_ms"),
                "series": [_endpoint_point(p, has_latency) for p in rep["series"]],
                "histogram": {
                    k: rep["histogram"][k] for k in ENDPOINT_VIEWS if k in rep["histogram"]
                },
                "intervals": [
                    {"second": p["second"], "latency": p["latency"]}
                    for p in rep["intervals"]["seconds"]
                    if "latency" in p
                ],
            }
        ]
    series = m.endpoint_series()
    blobs = m.endpoint_interval_blobs()
    empty = new_histogram()
    out = []
    for i in range(n):
        sums = m.endpoints.get(i)
        hists = sums.hists if sums is not None else {}
        fig: dict[str, Any] = {
            "status": {str(c): k for c, k in sorted(sums.status.items())} if sums else {},
            "errors": dict(sorted(sums.errors.items())) if sums else {},
            "series": series.get(i, []),
            # the endpoint's merged histograms and its per-second latency ones (None and [] from
            # ENDPOINT_HISTS_MAX on, which have none)
            "histogram": {v: _text(hists[v].encode()) for v in ENDPOINT_VIEWS if v in hists}
            if i < ENDPOINT_HISTS_MAX
            else None,
            "intervals": [{"second": s, **views} for s, views in blobs.get(i, {}).items()],
        }
        for key, view in (
            ("latency_ms", "latency"),
            ("connect_ms", "connect"),
            ("ttfb_ms", "ttfb"),
            ("tls_ms", "tls"),
        ):
            fig[key] = latency_summary(hists.get(view, empty)) if i < ENDPOINT_HISTS_MAX else None
        if open_loop:
            for key, view in (
                ("latency_uncorrected_ms", "uncorrected"),
                ("send_lag_ms", "send_lag"),
            ):
                fig[key] = (
                    latency_summary(hists.get(view, empty)) if i < ENDPOINT_HISTS_MAX else None
                )
        out.append(fig)
    return out


def _endpoint_point(p: dict[str, Any], has_latency: set[int]) -> dict[str, Any]:
    """A totals' series point as an endpoint's: latency figures None (not 0.0) without counts."""
    if p["second"] in has_latency:
        return dict(p)
    return {**p, **{k: None for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}}


def worker_row(w: WorkerState) -> dict[str, Any]:
    el = w.elapsed_ns / NS_PER_S
    user, sys_ = w.cpu.get("user_s", 0.0), w.cpu.get("sys_s", 0.0)
    # CPU shares over the interval the CPU figures cover (set-up and final drain included; a
    # worker that sends no wall_s: the run's own time). Not over a shorter one than
    # CPU_SHARE_MIN_S: the kernel brings a running thread's CPU time up to date at its
    # scheduler tick (4 ms here), so a few-ms run measured 240 % of a CPU on a 2-CPU machine.
    cpu_el = w.cpu.get("wall_s", 0.0) or el
    if cpu_el < CPU_SHARE_MIN_S:
        cpu_el = 0.0  # shares: None
    spin = min(user + sys_, w.counters.get("spin_ns", 0) / NS_PER_S)
    wait = w.counters.get("runq_wait_ns", 0) / NS_PER_S
    nap = w.counters.get("nap_on_ns", 0) / NS_PER_S
    return {
        "worker": w.worker,
        **{k: int(w.counters.get(k, 0)) for k in COUNTER_KEYS},
        "bytes_rx": int(w.counters.get("bytes_rx", 0)),
        "elapsed_s": round(el, 6),
        "rps": round(w.counters.get("completed", 0) / el, 3) if el > 0 else 0.0,
        "cpu_user_s": round(user, 6),
        "cpu_sys_s": round(sys_, 6),
        "cpu_share": round((user + sys_) / cpu_el, 4) if cpu_el > 0 else None,
        "wakeups": int(w.cpu.get("wakeups", 0)),
        # Open loop: the part of that CPU spent polling for sends that were not due yet (the
        # pacing spin, chosen, not forced by load); busy = the rest, what the self-check uses.
        "cpu_spin_s": round(spin, 6),
        "cpu_busy_share": (round(max(0.0, user + sys_ - spin) / cpu_el, 4) if cpu_el > 0 else None),
        # Time the engine thread was runnable but another task had its CPU (schedstat).
        "cpu_wait_s": round(wait, 6),
        "cpu_wait_share": round(wait / el, 4) if el > 0 else 0.0,
        # Closed loop: time naps were on (a poll that found nothing then sleeps on a timer
        # instead of blocking on the sockets; nap.pxi: only while probes find naps cost the
        # server's throughput nothing).
        "nap_s": round(nap, 6),
        "nap_share": round(min(nap / el, 1.0), 4) if el > 0 else 0.0,
        "samples": w.samples,
        "snapshots": w.snapshots,
        "snapshots_rejected": w.rejected,
        "final": w.final,
        "lost": w.lost,
    }


def _warnings(
    m: Merger, rep: dict[str, Any], open_loop: bool, dropped: int, clamped: dict[str, int]
) -> list[str]:
    """The generator's self-check and other things a reader of the report must not miss."""
    out = []
    busiest = max((row["cpu_busy_share"] or 0.0 for row in rep["workers"]), default=0.0)
    if open_loop:
        lag99 = rep["send_lag_ms"]["p99"]
        if lag99 > SEND_LAG_WARN_MS:
            msg = f"send lag p99 is {lag99:.3f} ms (> {SEND_LAG_WARN_MS:g} ms): requests left late"
            waited = max((row["cpu_wait_share"] for row in rep["workers"]), default=0.0)
            if busiest >= CPU_SATURATED / 2 or waited >= CPU_WAIT_WARN:
                msg += ", so the generator, not the server, may be the bottleneck"
            else:
                # The generator had CPU to spare: requests waited for a free connection because
                # every connection was waiting on the server (the corrected view counts that).
                msg += (
                    " while the generator had CPU to spare: every connection was busy waiting on "
                    "the server (more -c or --max-connections keeps the schedule)"
                )
            out.append(msg)
    for row in rep["workers"]:
        if row["elapsed_s"] >= 0.5 and (row["cpu_busy_share"] or 0.0) >= CPU_SATURATED:
            spun = f" besides {row['cpu_spin_s']:.2f}s of pacing spin" if row["cpu_spin_s"] else ""
            out.append(
                f"worker {row['worker']} used {row['cpu_busy_share'] * 100:.0f}% of a CPU{spun}: "
                "the generator, not the server, may be the bottleneck (add workers or CPUs)"
            )
        # An open loop that kept its schedule lost nothing by waiting (workers that spin for
        # their sends make each other wait on one CPU); a closed loop's rate is what it got.
        starved = not open_loop or rep["send_lag_ms"]["p99"] > SEND_LAG_WARN_MS
        if row["elapsed_s"] >= 0.5 and row["cpu_wait_share"] >= CPU_WAIT_WARN and starved:
            out.append(
                f"worker {row['worker']} waited {row['cpu_wait_share'] * 100:.0f}% of the run for "
                "a CPU another task held: the generator, not the server, may be the bottleneck "
                "(fewer workers than CPUs, or keep the target off the workers' CPUs)"
            )
    if dropped:
        out.append(
            f"{dropped} samples were dropped by the ring: latency figures miss them "
            "(counts and status totals are still exact)"
        )
    bulk = rep["samples"]["failures_without_sample"]
    if bulk:
        out.append(
            f"{bulk} scheduled requests that no connection could take were counted in bulk "
            "(not_sent or timeout), without a sample each: the per-second series misses "
            "them (totals are exact); the rate is far beyond what the connections served"
        )
    for name, n in clamped.items():
        if n:
            out.append(f"{n} {name} values exceeded 1 h and were clamped to 1 h")
    if m.rejected:
        out.append(
            f"{m.rejected} malformed snapshot(s) were refused and are not in the result "
            f"(first: {m.rejected_reasons[0]})"
        )
    for wid in m.lost_workers:
        out.append(f"worker {wid} was lost: its data up to its last snapshot is included")
    beyond = sum(1 for i, e in m.endpoints.items() if i >= ENDPOINT_HISTS_MAX and e.samples)
    if beyond:
        out.append(
            f"{beyond} endpoint(s) from #{ENDPOINT_HISTS_MAX} on have no latency, connect or ttfb "
            "figures of their own (a memory bound; the totals include them)"
        )
    return out


def _text(blob: bytes | str) -> str:
    return blob.decode("ascii") if isinstance(blob, bytes) else blob


def errno_name(e: int) -> str:
    import errno as _errno

    return _errno.errorcode.get(e, str(e))


def add_worker_info(rep: dict[str, Any], infos: list[dict[str, Any]], lost: set[int]) -> None:
    """The Merger's per-worker rows (totals) get where each worker ran and how it ended (the
    coordinator's view of its peers, or the workers' own result files: result/workerfile.py)."""
    extra_rows = {w["worker"]: w for w in infos}
    rows = rep.setdefault("workers", [])
    for row in rows:
        more = extra_rows.pop(row.get("worker"), None)
        if more:
            row.update({k: v for k, v in more.items() if k not in row or k in ("lost", "state")})
    rows.extend(extra_rows.values())  # workers that never sent a snapshot
    rows.sort(key=lambda r: r.get("worker", 0))
    rep["workers_lost"] = sorted(lost | set(rep.get("workers_lost", [])))


def config_info(cfg: RunConfig, workers: int | None = None) -> dict[str, Any]:
    """What the report's `config` says about a run (times in seconds, as a user typed them)."""
    return {
        "url": cfg.target.url,
        "method": cfg.method,
        "connections": cfg.connections,
        "max_connections": cfg.max_connections,
        "workers": cfg.workers if workers is None else workers,
        "duration_s": cfg.duration_ns / NS_PER_S if cfg.duration_ns else None,
        "requests": cfg.requests or None,
        "rate": cfg.rate or None,
        "stages": [
            {
                "duration_s": s.duration_ns / NS_PER_S,
                "rate": s.rate,
                "text": f"{format_duration(s.duration_ns)}:{s.rate:g}",
            }
            for s in cfg.stages
        ],
        "arrival": cfg.arrival,
        "open_loop": cfg.open_loop,
        "seed": cfg.seed,
        # the one request of a URL run (a scenario's endpoints are below): credentials redacted
        **(
            {"headers": redact_headers(cfg.headers), "body_bytes": len(cfg.body)}
            if not cfg.endpoints
            else {}
        ),
        "naps": cfg.naps and not cfg.open_loop,
        "timeouts": {
            "request_s": cfg.timeout_ns / NS_PER_S,
            "connect_s": cfg.connect_timeout_ns / NS_PER_S,
        },
        "target": {
            "addr": cfg.target.addr,
            "port": cfg.target.port,
            **({"unix_socket": cfg.transport.unix_socket} if cfg.transport.unix_socket else {}),
        },
        **(
            {
                "tls": {
                    "verify": cfg.transport.verify,
                    "servername": cfg.transport.servername or cfg.target.host,
                    "resume": cfg.transport.resume,
                    "client_cert": bool(cfg.transport.cert),
                }
            }
            if cfg.transport.tls
            else {}
        ),
        **(
            {
                "endpoints": [
                    {"name": e.name, "weight": e.weight, "checks": list(e.checks)}
                    for e in cfg.endpoints
                ]
            }
            if cfg.endpoints
            else {}
        ),
        **({"flows": [flow_info(f, cfg) for f in cfg.flows]} if cfg.flows else {}),
        **({"tags": dict(cfg.tags)} if cfg.tags else {}),
        **(
            {
                "data": [
                    {"name": f.name, "order": _ORDER_NAMES[f.order], "rows": len(f.rows)}
                    for f in cfg.feeders
                ]
            }
            if cfg.feeders
            else {}
        ),
    }


_ORDER_NAMES = ("sequential", "random", "unique")
CAPTURE_FAILURES = ("missing", "too_long", "bad_bytes", "truncated")  # loop.pxi _CAPTURE_FAILURES
_THINK_NAMES = ("constant", "uniform", "exponential")


def flow_info(f: Any, cfg: RunConfig) -> dict[str, Any]:
    """A flow as the report's config shows it: its steps in order (endpoint names and thinks)."""
    steps: list[str] = []
    for st in f.steps:
        if st[0] == 1:
            steps.append(cfg.endpoints[st[1]].name)
        else:
            kind, a, b = _THINK_NAMES[st[1]], st[2] / 1e9, st[3] / 1e9
            arg = f"{a:g}s" if kind != "uniform" else f"{a:g}s..{b:g}s"
            steps.append(f"think {arg}" + ("" if kind == "constant" else f" ({kind})"))
    return {
        "name": f.name,
        "weight": f.weight,
        "steps": steps,
        "cookies": f.cookies,
        "on_capture_fail": "restart" if f.on_fail == 0 else "skip",
        "captures": [list(c) for c in f.captures],
    }


def _data_exhausted(m: Any, config_info: dict[str, Any]) -> dict[str, Any]:
    feeds = config_info.get("data", [])
    out = sorted(
        {
            feeds[i - 1]["name"] if 0 < i <= len(feeds) else f"#{i - 1}"
            for i in (int(w.counters.get("data_out", 0)) for w in m.workers.values())
            if i
        }
    )
    return {"data_exhausted": out} if out else {}
