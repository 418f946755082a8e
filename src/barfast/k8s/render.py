"""`barfast k8s render`: the options of one distributed run -> its manifests, as multi-document YAML.

Everything a cluster would reject late is checked here, where a user sees it at once: the load
options (the same validation as `barfast run`, with the target's host taken as reachable, since
cluster names do not resolve from where one renders), the scenario and its files (YAML scenarios:
the files a .py scenario reads cannot be known), their size against a ConfigMap's 1 MiB, and the
names Kubernetes will derive from --name. CURVE keys are made here, one pair for the coordinator
and one per worker, into the run's Secret: nothing of the run listens without authentication.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from barfast.config import NS_PER_S, parse_duration
from barfast.k8s.manifests import FILES_MOUNT, Run, documents
from barfast.status import UsageError

CONFIGMAP_MAX_BYTES = 1 << 20  # the API server's limit on a ConfigMap's data (and a Secret's)
DEADLINE_MARGIN_S = 60  # start-up, the coordinator's end grace and its report, past the run
WORKER_IDLE_MARGIN_S = 30  # a worker waits this much longer for its plan than the coordinator
DEFAULT_WAIT_TIMEOUT = "5m"  # image pulls and scheduling: pods start over minutes, not seconds
DEFAULT_TTL_S = 3600
TLS_CA_PATH = "barfast-tls/ca.pem"  # --cacert's bundle, in the ConfigMap
MAX_WORKERS = 1000
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 label (a Service's name)
NAME_MAX = 40  # + "-coordinator"/"-workers" and the pods' suffixes stay under 63


def _yaml_dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: Any, value: str) -> Any:
        # key files and scenarios stay readable as literal blocks
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def _offline_url(url: str) -> str:
    """The same URL on 127.0.0.1: checks the syntax and options without resolving a cluster name."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if not parts.hostname:
        return url  # build_run_config names the fault
    netloc = "127.0.0.1" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _check_name(name: str) -> str:
    if len(name) > NAME_MAX or not _NAME_RE.match(name):
        raise UsageError(
            f"bad --name {name!r}: lower-case letters, digits and '-', starting with a letter, "
            f"at most {NAME_MAX} characters"
        )
    return name


def _check_namespace(ns: str | None) -> str | None:
    if ns is not None and (len(ns) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ns)):
        raise UsageError(f"bad --namespace {ns!r}: a DNS label (lower-case letters, digits, '-')")
    return ns


def _scenario_files(path: Path) -> dict[str, bytes]:
    """The scenario file and every file it names (CSV data, request bodies), by path relative to
    the scenario's folder, which is how the pod sees them under FILES_MOUNT."""
    import yaml

    text = path.read_text(encoding="utf-8")
    files = {path.name: text.encode("utf-8")}
    data = yaml.safe_load(text)
    refs: list[str] = []
    if isinstance(data, dict):
        for spec in (data.get("data") or {}).values():
            if isinstance(spec, dict) and isinstance(spec.get("csv"), str):
                refs.append(spec["csv"])
        for r in data.get("requests") or ():
            if isinstance(r, dict) and isinstance(r.get("body_file"), str):
                refs.append(r["body_file"])
    for ref in refs:
        rel = PurePosixPath(ref)
        if rel.is_absolute() or ".." in rel.parts:
            raise UsageError(
                f"{path}: {ref!r} is outside the scenario's folder; for a ConfigMap every file "
                "must be beside the scenario or below it (use a relative path)"
            )
        try:
            files[str(rel)] = (path.parent / rel).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {ref!r} (named in {path}): {exc.strerror}") from None
    return files


def check_configmap_size(files: dict[str, bytes]) -> None:
    total = sum(len(v) for v in files.values())
    if total > CONFIGMAP_MAX_BYTES:
        biggest = max(files, key=lambda k: len(files[k]))
        raise UsageError(
            f"the scenario's files are {total} bytes; a ConfigMap holds at most "
            f"{CONFIGMAP_MAX_BYTES} (1 MiB), the largest is {biggest!r} ({len(files[biggest])} "
            "bytes): use less data, or build the files into the image"
        )


def make_keys(workers: int) -> dict[str, str]:
    """CURVE key files (ZeroMQ's certificate format, as `barfast keys` writes them) for the
    coordinator and each worker: NAME.key (public) and NAME.key_secret."""
    import zmq
    import zmq.auth

    if not zmq.has("curve"):
        raise UsageError("this libzmq was built without CURVE support; cannot generate keys")
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="barfast-k8s-keys-") as d:
        for name in ["coordinator"] + [f"worker-{i}" for i in range(workers)]:
            pub, sec = zmq.auth.create_certificates(d, name)
            out[f"{name}.key"] = Path(pub).read_text()
            out[f"{name}.key_secret"] = Path(sec).read_text()
    return out


def _run_config(target: str, is_scenario: bool, options: dict[str, Any], workers: int) -> Any:
    """Validate the load options exactly as `barfast run` would; returns the RunConfig."""
    from barfast.config import build_run_config

    opts = {k: v for k, v in options.items() if k not in ("seed", "tags")}
    if is_scenario:
        from barfast.scenario.compile import compile_run, load_options
        from barfast.scenario.load import load_scenario

        sc = load_scenario(target)
        sc = dataclasses.replace(
            sc,
            target=_offline_url(sc.target) if sc.target else None,
            requests=tuple(
                dataclasses.replace(r, url=_offline_url(r.url)) if r.url else r for r in sc.requests
            ),
        )
        load = load_options(sc, {k: opts.get(k) for k in _LOAD_FLAGS})
        rest = {k: v for k, v in opts.items() if k not in _LOAD_FLAGS and k not in _REQUEST_FLAGS}
        return compile_run(sc, workers=workers, **load, **rest)
    return build_run_config(_offline_url(target), workers=workers, **opts)


_LOAD_FLAGS = (
    "connections",
    "max_connections",
    "duration",
    "requests",
    "rate",
    "stages",
    "arrival",
    "timeout",
    "connect_timeout",
)
_REQUEST_FLAGS = ("method", "headers", "body", "body_file")


def _run_args(o: dict[str, Any], body_file_in_pod: str | None) -> list[str]:
    """The load options as `barfast run` arguments, in the order the user's help lists them."""
    args: list[str] = []
    pairs = [
        ("-c", o.get("connections_given")),
        ("-d", o.get("duration")),
        ("-n", o.get("requests")),
        ("-m", o.get("method_given")),
        ("--body", o.get("body")),
        ("--body-file", body_file_in_pod),
        ("--timeout", o.get("timeout")),
        ("--connect-timeout", o.get("connect_timeout")),
        ("-R", None if o.get("rate") is None else f"{o['rate']:g}"),
        ("--stages", o.get("stages")),
        ("--arrival", o.get("arrival_given")),
        ("--max-connections", o.get("max_connections") or None),
        ("--seed", o.get("seed")),
        ("--cacert", o.get("cacert_in_pod")),
        ("--servername", o.get("servername")),
    ]
    for flag, value in pairs:
        if value is not None:
            args += [flag, str(value)]
    for h in o.get("headers") or ():
        args += ["-H", h]
    for t in o.get("tag_list") or ():
        args += ["--tag", t]
    if not o.get("naps", True):
        args.append("--no-naps")
    if o.get("latency"):
        args.append("--latency")
    if o.get("fail_on_worker_loss"):
        args.append("--fail-on-worker-loss")
    if o.get("insecure"):
        args.append("--insecure")
    return args


def render_command(
    target: str | None,
    *,
    workers: int,
    namespace: str | None = None,
    image: str = "barfast:latest",
    name: str | None = None,
    wait_timeout: str = DEFAULT_WAIT_TIMEOUT,
    ttl: str = "1h",
    memory: str = "512Mi",
    results_claim: str | None = None,
    connections: int | None = None,
    duration: str | None = None,
    requests: int | None = None,
    method: str | None = None,
    headers: list[str] | None = None,
    body: str | None = None,
    body_file: str | None = None,
    timeout: str | None = None,
    connect_timeout: str | None = None,
    rate: float | None = None,
    stages: str | None = None,
    arrival: str | None = None,
    max_connections: int | None = None,
    naps: bool = True,
    latency: bool = False,
    fail_on_worker_loss: bool = False,
    seed: int | None = None,
    tags: list[str] | None = None,
    insecure: bool = False,
    cacert: str | None = None,
    servername: str | None = None,
    out: Any = None,
) -> int:
    """Print the run's manifests (YAML, one document per object) to `out` (stdout)."""
    if not target:
        raise UsageError("barfast k8s render needs a target: an http:// URL or a scenario file")
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"bad --workers {workers}: from 1 to {MAX_WORKERS} worker pods")
    name = _check_name(name or f"barfast-{secrets.token_hex(3)}")
    namespace = _check_namespace(namespace)
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"bad --image {image!r}")
    if results_claim is not None and not _NAME_RE.match(results_claim):
        raise UsageError(f"bad --results-claim {results_claim!r}: a PersistentVolumeClaim name")
    if not re.match(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$", memory):
        raise UsageError(f"bad --memory {memory!r}: a Kubernetes quantity such as 512Mi or 2Gi")
    wait_ns = parse_duration(wait_timeout, "--wait-timeout")
    ttl_ns = parse_duration(ttl, "--ttl")
    if wait_ns <= 0:
        raise UsageError(f"bad --wait-timeout {wait_timeout!r}: must be positive")
    if seed is not None and seed < 0:
        raise UsageError(f"bad --seed {seed}: must be >= 0")
    for t in tags or ():
        if "=" not in t or not t.partition("=")[0].strip():
            raise UsageError(f"bad --tag {t!r}: expected KEY=VALUE")
    is_scenario = "://" not in target and target.lower().endswith((".yaml", ".yml", ".py"))
    files: dict[str, bytes] = {}
    if is_scenario:
        if target.lower().endswith(".py"):
            raise UsageError(
                "barfast k8s render takes a URL or a YAML scenario: the files a .py scenario "
                "reads cannot be known, so they cannot go into its ConfigMap"
            )
        if method is not None or headers or body is not None or body_file is not None:
            raise UsageError(
                "-m/-H/--body/--body-file describe a URL's request; a scenario sets its own"
            )
        p = Path(target)
        if not p.is_file():
            raise UsageError(f"cannot read scenario {target!r}: no such file")
    options: dict[str, Any] = dict(
        method=method or "GET",
        headers=headers or [],
        body=body,
        body_file=body_file,
        connections=50 if connections is None else connections,
        max_connections=max_connections or 0,
        duration=duration,
        requests=requests,
        timeout=timeout,
        connect_timeout=connect_timeout,
        rate=rate,
        stages=stages,
        arrival=arrival or "constant",
        naps=naps,
    )
    cfg = _run_config(target, is_scenario, options, workers)
    from barfast.config import build_transport

    build_transport(cfg.target, insecure=insecure, cacert=cacert, servername=servername)
    from barfast.fanout.plan import effective_workers

    usable = effective_workers(cfg, workers)
    if usable < workers:
        raise UsageError(
            f"this run can use only {usable} workers (each needs a connection and, with -n, a "
            f"request), not --workers {workers}"
        )
    if not cfg.duration_ns:
        raise UsageError(
            "a Kubernetes run needs a time bound for its Jobs' deadline: give -d/--duration "
            "(with -n, whichever comes first)"
        )
    if is_scenario:
        files = _scenario_files(Path(target))
        pod_target = f"{FILES_MOUNT}/{Path(target).name}"
    else:
        pod_target = target
    body_in_pod = None
    if body_file is not None:
        files["body"] = Path(body_file).read_bytes()  # readable: build_run_config read it
        body_in_pod = f"{FILES_MOUNT}/body"
    cacert_in_pod = None
    if cacert is not None:  # read by every worker on its own host: mounted in all pods
        files[TLS_CA_PATH] = Path(cacert).read_bytes()  # readable: build_transport opened it
        cacert_in_pod = f"{FILES_MOUNT}/{TLS_CA_PATH}"
    check_configmap_size(files)
    run_opts = dict(
        options,
        connections_given=connections,
        method_given=method,
        arrival_given=arrival,
        seed=seed,
        tag_list=tags or [],
        latency=latency,
        fail_on_worker_loss=fail_on_worker_loss,
        insecure=insecure,
        cacert_in_pod=cacert_in_pod,
        servername=servername,
    )
    deadline_s = math.ceil(
        (wait_ns + cfg.duration_ns + cfg.timeout_ns) / NS_PER_S + DEADLINE_MARGIN_S
    )
    keys = make_keys(workers)
    if sum(len(v) for v in keys.values()) > CONFIGMAP_MAX_BYTES:  # ~500 bytes a worker
        raise UsageError(f"{workers} workers' keys do not fit a Secret (1 MiB)")
    run = Run(
        name=name,
        namespace=namespace,
        image=image,
        workers=workers,
        run_args=_run_args(run_opts, body_in_pod),
        target=pod_target,
        wait_timeout=wait_timeout,
        worker_idle_timeout=f"{math.ceil(wait_ns / NS_PER_S) + WORKER_IDLE_MARGIN_S}s",
        deadline_s=deadline_s,
        ttl_s=max(0, math.ceil(ttl_ns / NS_PER_S)),
        keys=keys,
        files=files,
        memory=memory,
        results_claim=results_claim,
    )
    import yaml

    text = yaml.dump_all(
        documents(run), Dumper=_yaml_dumper(), sort_keys=False, default_flow_style=False
    )
    (out or sys.stdout).write(text)
    print(
        f"barfast: run {name}: {workers} worker pod(s); apply with `kubectl apply -f -`, "
        f"follow with `kubectl logs -f job/{name}-coordinator`",
        file=sys.stderr,
    )
    return 0
