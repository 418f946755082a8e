"""Options that `barfast run` and `barfast k8s render` both take, each defined once.

A command uses one as `connections: ConnectionsOpt = None`; the flag names, types and help are
the same wherever it appears, so `barfast k8s render` takes exactly the load flags `barfast run` does.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

# The load options both commands hand on unchanged (run_command, k8s render_command), by name.
LOAD_KEYS = (
    "connections", "duration", "requests", "method", "body", "body_file", "timeout",
    "connect_timeout", "rate", "stages", "arrival", "max_connections", "naps", "latency",
    "fail_on_worker_loss", "seed",
)  # fmt: skip


def load_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    """The shared load options out of a command's parameters (its locals()), as the keywords
    run_command and render_command take: -H and --tag as lists."""
    out = {k: values[k] for k in LOAD_KEYS}
    out["headers"] = values["header"] or []
    out["tags"] = values["tag"] or []
    return out


ConnectionsOpt = Annotated[
    int | None,
    typer.Option("-c", "--connections", help="Open connections (total; default 50)."),
]
DurationOpt = Annotated[
    str | None,
    typer.Option(
        "-d",
        "--duration",
        help="Run time: 500ms, 10s, 2m, 1m30s (default 10s, or unbounded with -n).",
    ),
]
RequestsOpt = Annotated[
    int | None,
    typer.Option("-n", "--requests", help="Stop after N requests (with -d: whichever first)."),
]
MethodOpt = Annotated[
    str | None,
    typer.Option("-m", "--method", help="HTTP method (default GET)."),
]
HeaderOpt = Annotated[
    list[str] | None,
    typer.Option("-H", "--header", help="'Name: value' (repeatable)."),
]
BodyOpt = Annotated[
    str | None,
    typer.Option("--body", help="Request body."),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option("--timeout", help="Request timeout (default 10s)."),
]
ConnectTimeoutOpt = Annotated[
    str | None,
    typer.Option("--connect-timeout", help="Connect timeout (default 3s)."),
]
RateOpt = Annotated[
    float | None,
    typer.Option("-R", "--rate", help="Open loop: total requests per second (at most 1e9)."),
]
StagesOpt = Annotated[
    str | None,
    typer.Option("--stages", help="Open loop ramps: 30s:1000,1m:5000,30s:0."),
]
ArrivalOpt = Annotated[
    str | None,
    typer.Option("--arrival", help="Open-loop arrivals: constant or poisson."),
]
MaxConnectionsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-connections",
        help="Open loop: grow up to this many connections when all are busy.",
    ),
]
NapsOpt = Annotated[
    bool,
    typer.Option(
        "--naps/--no-naps",
        help="Closed loop: nap 20us on a timer instead of waking per response, while probes "
        "show it costs the server's throughput nothing (default on).",
    ),
]
LatencyOpt = Annotated[
    bool,
    typer.Option("--latency", help="Print the full percentile spectrum."),
]
FailOnWorkerLossOpt = Annotated[
    bool,
    typer.Option("--fail-on-worker-loss", help="Stop the run when a worker is lost."),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Seed of the endpoint picks, random data and Poisson arrivals."),
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", help="k=v metadata for the report (repeatable; a scenario's too)."),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("-k", "--insecure", help="https: do not verify the server's certificate."),
]
ServernameOpt = Annotated[
    str | None,
    typer.Option("--servername", help="https: SNI and certificate name (default: the URL's host)."),
]
