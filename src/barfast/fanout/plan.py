"""Per-worker plans: one RunConfig split into N shares that add up exactly.

Decisions (documented here because the coordinator and the report depend on them):
- Connections and `-n` requests are split as evenly as integers allow; the remainder goes one each to
  the first workers, so the shares always add up to the total (never lost).
- The number of workers is capped at the number of connections (every worker needs at least one
  connection) and, with `-n`, at the number of requests (a worker with a share of 0 would be
  unbounded, since 0 means "no count bound" to the engine). `split_plan` may therefore return fewer
  plans than asked for; callers use `len(plans)`.
- The rate (and every stage's rate) is split in proportion to each worker's connections, so every
  connection carries the same rate and the shares add up to the total rate (up to float rounding).
- `--max-connections` is split like connections (each share stays >= that worker's connections).
- Seeds: worker i gets `cfg.seed + i`, so Poisson arrival streams of different workers differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from barfast.config import RunConfig
from barfast.status import UsageError

ARRIVALS = {"constant": 0, "poisson": 1}


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of a run: everything its Engine needs (all times in ns)."""

    addr: str
    port: int
    family: int
    request: bytes
    head: bool
    connections: int
    max_connections: int = 0
    requests: int = 0  # 0: no count bound
    duration_ns: int = 0  # 0: no time bound
    timeout_ns: int = 0
    connect_timeout_ns: int = 0
    rate: float = 0.0  # this worker's req/s; 0 with no stages = closed loop
    stages: tuple[tuple[int, float], ...] = ()  # (duration_ns, end rate) ramps
    arrival: str = "constant"  # or "poisson"
    naps: bool = True  # closed loop: the nap controller may nap (False: block on the sockets)
    seed: int = 0
    worker_index: int = 0
    workers: int = 1  # how many workers share the run
    # a scenario's mix: (request, head, weight, status ranges, template or None) per endpoint;
    # (): `request` alone. A template is (blob, ops) (scenario/template.py).
    # (the sixth element: the endpoint's checks, config.Endpoint.engine_checks)
    endpoints: tuple[tuple[Any, ...], ...] = ()
    max_body: int = 64 * 1024  # body bytes kept per response for checks
    # this worker's rows of each feeder: (arena, offsets, nrows, nvars, order), Engine's form
    feeders: tuple[tuple[bytes, bytes, int, int, int], ...] = ()
    # https (config.Transport; paths read on the worker's host; runner.plan_tls) and --unix-socket
    tls: bool = False
    tls_host: str = ""
    tls_sni: str = ""
    tls_verify: bool = True
    tls_cafile: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_resume: bool = True
    unix_path: str = ""
    # flows: (weight, feeds mask, cookies, on_fail, steps) each (config.FlowSpec.to_engine); the
    # endpoints are their request steps; `requests` bounds iterations
    flows: tuple[tuple[Any, ...], ...] = ()
    nvars: int = 0

    @property
    def open_loop(self) -> bool:
        return self.rate > 0 or bool(self.stages)

    @property
    def arrival_code(self) -> int:
        """The Engine's `arrival` argument (0 constant, 1 poisson)."""
        return ARRIVALS[self.arrival]

    def to_dict(self) -> dict[str, Any]:
        """msgpack-safe: only ints, floats, str, bytes, bools and lists."""
        d = asdict(self)
        d["stages"] = [[int(dur), float(rate)] for dur, rate in self.stages]
        d["endpoints"] = [
            [
                ep[0],
                bool(ep[1]),
                float(ep[2]),
                [[int(lo), int(hi)] for lo, hi in ep[3]],
                None if len(ep) < 5 or ep[4] is None else [ep[4][0], ep[4][1]],
                # ranges flat (lo, hi, lo, hi, ...): the protocol bounds how deep a message nests
                [
                    [k, m, [x for r in rs for x in r], a, b]
                    for k, m, rs, a, b in (ep[5:6] or [()])[0]
                ],
            ]
            for ep in self.endpoints
        ]
        d["feeders"] = [list(f) for f in self.feeders]
        d["flows"] = [
            [float(w), int(feeds), bool(cookies), int(on_fail), [_step_out(st) for st in steps]]
            for w, feeds, cookies, on_fail, steps in self.flows
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerPlan:
        d = dict(d)
        d["stages"] = tuple((int(dur), float(rate)) for dur, rate in d.get("stages", ()))
        req = d["request"]
        d["request"] = req.encode("latin-1") if isinstance(req, str) else bytes(req)
        d["endpoints"] = tuple(
            (
                _bytes(ep[0]),
                bool(ep[1]),
                float(ep[2]),
                tuple((int(lo), int(hi)) for lo, hi in ep[3]),
                None if len(ep) < 5 or ep[4] is None else (_bytes(ep[4][0]), _bytes(ep[4][1])),
                tuple(
                    (
                        int(k),
                        int(m),
                        _pairs(rs),
                        _bytes(a),
                        _bytes(b),
                    )
                    for k, m, rs, a, b in (ep[5] if len(ep) > 5 else ())
                ),
            )
            for ep in d.get("endpoints", ())
        )
        d["feeders"] = tuple(
            (_bytes(a), _bytes(o), int(n), int(v), int(order))
            for a, o, n, v, order in d.get("feeders", ())
        )
        d["flows"] = tuple(
            (float(w), int(feeds), bool(cookies), int(on_fail), tuple(_step_in(st) for st in steps))
            for w, feeds, cookies, on_fail, steps in d.get("flows", ())
        )
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def _step_out(st: tuple[Any, ...]) -> list[Any]:
    """A flow step, msgpack-safe and flat enough for the protocol's nesting bound: a request's
    captures as one flat list (var, kind, a, b, var, kind, a, b, ...)."""
    if st[0] == 1:
        return [1, int(st[1]), [x for cap in st[2] for x in cap]]
    return [int(x) for x in st]


def _step_in(st: Any) -> tuple[Any, ...]:
    if int(st[0]) == 1:
        flat = list(st[2])
        caps = tuple(
            (int(flat[i]), int(flat[i + 1]), _bytes(flat[i + 2]), _bytes(flat[i + 3]))
            for i in range(0, len(flat) - len(flat) % 4, 4)
        )
        return (1, int(st[1]), caps)
    return tuple(int(x) for x in st)


def _pairs(flat: Any) -> tuple[tuple[int, int], ...]:
    xs = [int(x) for x in flat]
    return tuple(zip(xs[0::2], xs[1::2], strict=True))


def _bytes(v: Any) -> bytes:
    return v.encode("latin-1") if isinstance(v, str) else bytes(v)


def split_int(total: int, n: int) -> list[int]:
    """`total` into n integer shares differing by at most one; the first `total % n` get one more."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def effective_workers(cfg: RunConfig, n: int) -> int:
    """How many workers a run really gets (see the module docstring)."""
    n = max(1, min(n, cfg.connections))
    if cfg.requests:
        n = min(n, cfg.requests)
    return n


def split_plan(cfg: RunConfig, n: int) -> list[WorkerPlan]:
    """Split cfg into per-worker plans whose connections, requests and rates add up to cfg's."""
    n = effective_workers(cfg, n)
    conns = split_int(cfg.connections, n)
    reqs = split_int(cfg.requests, n) if cfg.requests else [0] * n
    maxc = split_int(cfg.max_connections, n) if cfg.max_connections else [0] * n
    request = cfg.request_bytes()
    feeds = [_feeder_shares(f, n) for f in cfg.feeders]
    tr = cfg.transport
    tls: dict[str, Any] = {}
    if tr.tls:
        host, sni = tr.tls_names(cfg.target)
        tls = dict(
            tls=True,
            tls_host=host,
            tls_sni=sni,
            tls_verify=tr.verify,
            tls_cafile=tr.cacert,
            tls_cert=tr.cert,
            tls_key=tr.key,
            tls_resume=tr.resume,
        )
    plans = []
    for i in range(n):
        share = conns[i] / cfg.connections
        plans.append(
            WorkerPlan(
                addr=cfg.target.addr,
                port=cfg.target.port,
                family=cfg.target.family,
                request=request,
                head=cfg.head,
                connections=conns[i],
                max_connections=maxc[i],
                requests=reqs[i],
                duration_ns=cfg.duration_ns,
                timeout_ns=cfg.timeout_ns,
                connect_timeout_ns=cfg.connect_timeout_ns,
                rate=cfg.rate * share,
                stages=tuple((s.duration_ns, s.rate * share) for s in cfg.stages),
                arrival=cfg.arrival,
                naps=cfg.naps,
                seed=cfg.seed + i,
                worker_index=i,
                workers=n,
                endpoints=tuple(
                    (e.request, e.head, e.weight, e.status, e.template, e.engine_checks)
                    for e in cfg.endpoints
                ),
                max_body=cfg.max_body_for_checks,
                feeders=tuple(shares[i] for shares in feeds),
                **tls,
                unix_path=cfg.transport.unix_socket,
                flows=tuple(f.to_engine() for f in cfg.flows),
                nvars=len(cfg.variables),
            )
        )
    return plans


def _feeder_shares(f: Any, n: int) -> list[tuple[bytes, bytes, int, int, int]]:
    """One feeder's rows for each of n workers: sequential and unique feeders are cut into
    disjoint row ranges (split_int), so no row is used by two workers; a random one goes whole."""
    from barfast.scenario.template import ORDERS

    if f.order == ORDERS["random"]:
        return [f.pack()] * n
    sizes = split_int(len(f.rows), n)
    if min(sizes) == 0:
        raise UsageError(
            f"data {f.name!r}: {len(f.rows)} rows for {n} workers; each worker takes its own "
            "rows, so give at least one per worker (or fewer workers)"
        )
    out, lo = [], 0
    for size in sizes:
        out.append(f.pack(lo, lo + size))
        lo += size
    return out
