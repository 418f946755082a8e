"""A remote worker's own record of its run, and `barfast merge`: the coordinator's report rebuilt from
those records alone.

A worker keeps every SNAPSHOT and FINAL frame it sent, as sent. When its run ends (normally, or
because its coordinator went silent) it writes them, with the report's `config` the coordinator
sent in its PLAN and what the coordinator knows of the worker (host, pid, CPUs, pod), as one JSON
document (schema barfast.worker-result/1): to a file with `--result-file`, and always as one line
on its stderr that starts with RESULT_LINE_PREFIX, so that a pod's log is enough.

The snapshots are the wire's own data, so merging them is the coordinator's merge: the same Merger,
fed in the order the coordinator sees them in (by second, then worker, then seq; a second's
percentiles are taken once it is SERIES_OPEN_S behind the newest, result/merge.py), then the same
per-worker rows (summary.add_worker_info). The merged report equals the coordinator's.

JSON has no bytes and no integer keys: bytes become {"$b64": "..."} and a map with a non-string
key becomes {"$map": [[key, value], ...]}; decode() reverses both exactly.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from barfast.status import ExitCode, UsageError

SCHEMA = "barfast.worker-result/1"
RESULT_LINE_PREFIX = "barfast-result: "
MAX_RESULT_BYTES = 1 << 30  # a file beyond this is not one of ours


def _to_json(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$b64": base64.b64encode(v).decode("ascii")}
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            if len(v) == 1 and next(iter(v)) in ("$b64", "$map"):
                return {"$map": [[k, _to_json(x)] for k, x in v.items()]}
            return {k: _to_json(x) for k, x in v.items()}
        return {"$map": [[k, _to_json(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if len(v) == 1 and "$b64" in v and isinstance(v["$b64"], str):
            return base64.b64decode(v["$b64"], validate=True)
        if len(v) == 1 and "$map" in v and isinstance(v["$map"], list):
            return {k: _from_json(x) for k, x in v["$map"]}
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def build_doc(
    *,
    run_id: str,
    worker: int,
    config: dict[str, Any],
    peer: dict[str, Any],
    ended: str,
    frames: list[bytes],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result document of one worker's run; `frames` are its SNAPSHOT/FINAL frames as sent."""
    from barfast.fanout import protocol

    snaps = [protocol.decode(f).body for f in frames]
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "worker": worker,
        "ended": ended,
        "peer": peer,
        "config": config,
        **({"meta": meta} if meta is not None else {}),
        "snapshots": [_to_json(s) for s in snaps],
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def write(doc: dict[str, Any], path: str) -> None:
    """Write atomically: a reader (or a pod killed mid-write) never sees half a document."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(doc))
        f.write("\n")
    os.replace(tmp, path)


def check_result_path(path: str) -> None:
    """Fail at the worker's start (exit 2), not after its run, when the file cannot be written."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write --result-file {path!r}: it is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write --result-file {path!r}: no directory {parent!r}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write --result-file {path!r}: permission denied")


# --- reading ---------------------------------------------------------------------------------------
def load(path: str) -> list[dict[str, Any]]:
    """The result documents in `path`: a result file, or a log holding result lines (one per run)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_RESULT_BYTES:
            raise UsageError(f"{path}: larger than {MAX_RESULT_BYTES >> 20} MiB; not a result")
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        chunks = [(1, stripped)]
    else:
        chunks = [
            (n, line.split(RESULT_LINE_PREFIX, 1)[1])
            for n, line in enumerate(text.splitlines(), 1)
            if RESULT_LINE_PREFIX in line
        ]
        if not chunks:
            raise UsageError(f"{path}: neither a worker result file nor a log with a result line")
    docs = []
    for line_no, chunk in chunks:
        try:
            doc = json.loads(chunk)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise UsageError(f"{path}:{line_no}: not a {SCHEMA} document")
        for key, typ in (
            ("run_id", str),
            ("worker", int),
            ("ended", str),
            ("peer", dict),
            ("config", dict),
            ("snapshots", list),
        ):
            if not isinstance(doc.get(key), typ):
                raise UsageError(f"{path}:{line_no}: field {key!r} missing or not a {typ.__name__}")
        try:
            doc["snapshots"] = [_from_json(s) for s in doc["snapshots"]]
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{path}:{line_no}: bad snapshot encoding ({exc})") from None
        doc["_source"] = f"{path}:{line_no}" if line_no > 1 or len(chunks) > 1 else path
        docs.append(doc)
    return docs


def merge_docs(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """(the report, why it is partial: [] when every worker of the run finished normally)."""
    from barfast.result.merge import Merger
    from barfast.result.summary import add_worker_info
    from barfast.status import ProtocolError

    if not docs:
        raise UsageError("no worker results to merge")
    run_ids = {d["run_id"] for d in docs}
    if len(run_ids) > 1:
        raise UsageError(
            f"the files are from {len(run_ids)} different runs ({', '.join(sorted(run_ids))}); "
            "merge one run's files at a time"
        )
    by_worker: dict[int, dict[str, Any]] = {}
    for d in docs:
        if d["worker"] in by_worker:
            raise UsageError(
                f"worker {d['worker']} appears twice ({by_worker[d['worker']]['_source']} and "
                f"{d['_source']})"
            )
        by_worker[d["worker"]] = d
    config = docs[0]["config"]
    merger = Merger()
    order = []
    for d in docs:
        for s in d["snapshots"]:
            if not isinstance(s, dict):
                raise UsageError(f"{d['_source']}: a snapshot is not a map")
            key = (s.get("interval", 0), s.get("worker", 0), s.get("seq", 0))
            if not all(isinstance(k, int) for k in key):
                raise UsageError(f"{d['_source']}: a snapshot's interval/worker/seq is not an int")
            order.append((key, d, s))
    order.sort(key=lambda t: t[0])
    counts: dict[int, int] = {}
    last: dict[int, dict[str, Any]] = {}
    for _, d, s in order:
        if s.get("worker") != d["worker"]:
            raise UsageError(f"{d['_source']}: holds a snapshot of worker {s.get('worker')}")
        try:
            merger.add(s)
        except ProtocolError as exc:
            raise UsageError(f"{d['_source']}: {exc}") from None
        counts[d["worker"]] = counts.get(d["worker"], 0) + 1
        last[d["worker"]] = s
    rep = merger.report(config)
    if isinstance(docs[0].get("meta"), dict):
        rep["meta"] = docs[0]["meta"]  # the coordinator's: where and when the run was made
        if "started_unix_s" in rep["meta"]:
            rep["started_unix_s"] = rep["meta"]["started_unix_s"]
    infos = []
    partial = []
    for w, d in sorted(by_worker.items()):
        final = any(s.get("final") for s in d["snapshots"])
        peer = d["peer"]
        counters = (last.get(w) or {}).get("counters", {})
        state = "done" if final else "lost"
        infos.append(
            {
                "worker": w,
                "host": peer.get("host", "?"),
                "pid": peer.get("pid", 0),
                "local": False,
                "cpus": peer.get("cpus", 0),
                "state": state,
                "lost": not final,
                "snapshots": counts.get(w, 0),
                "completed": int(counters.get("completed", 0)),
                "errors": int(counters.get("errors", 0)),
                **({"pod": peer["pod"]} if peer.get("pod") else {}),
            }
        )
        if d["ended"] != "done":
            partial.append(f"worker {w}'s run ended early ({d['ended']})")
    add_worker_info(rep, infos, {i["worker"] for i in infos if i["lost"]})
    n = int(config.get("workers") or len(by_worker))
    missing = sorted(set(range(n)) - set(by_worker))
    if missing:
        partial.append(
            f"no result from worker{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing))} of {n}"
        )
    return rep, partial


def merge_command(
    files: list[str], *, json_out: bool = False, output: str | None = None, latency: bool = False
) -> int:
    """`barfast merge W1.json W2.json ...`: print the run's report (text, or JSON with --json);
    exit 3 when it is partial (a worker's run ended early, or a worker's result is missing)."""
    from barfast.command import check_output_path, emit

    if not files:
        raise UsageError("barfast merge needs at least one worker result file")
    check_output_path(output)
    docs = [doc for f in files for doc in load(f)]
    rep, partial = merge_docs(docs)
    emit(rep, latency=latency, json_out=json_out, output=output)
    if partial:
        print(f"barfast: the report is partial: {'; '.join(partial)}", file=sys.stderr)
        return int(ExitCode.NO_LOAD)
    return int(ExitCode.OK)
