"""The typer front end: option parsing and the one place exceptions become exit codes.

Commands only parse and dispatch; the work lives in config.py (validation), coordinator.py (runs),
serve.py, worker.py, keys.py and bench.py. Heavy imports happen inside the commands so that
`barfast --help` stays quick.

Why ~740 lines in one module: it is the declaration of every command's flags (typer needs each
parameter spelt out in the command's signature) and nothing else; options two commands share are
defined once in cli_options.py.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

try:  # typer >= 0.2x vendors click as typer._click; older typer depends on click itself
    from typer._click.exceptions import ClickException, UsageError  # type: ignore[import-not-found]
    from typer.exceptions import Abort, Exit  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import (  # type: ignore[no-redef,assignment]
        Abort,
        ClickException,
        Exit,
        UsageError,
    )

from barfast import __version__
from barfast.cli_options import (
    ArrivalOpt,
    BodyOpt,
    ConnectionsOpt,
    ConnectTimeoutOpt,
    DurationOpt,
    FailOnWorkerLossOpt,
    HeaderOpt,
    InsecureOpt,
    LatencyOpt,
    MaxConnectionsOpt,
    MethodOpt,
    NapsOpt,
    RateOpt,
    RequestsOpt,
    SeedOpt,
    ServernameOpt,
    StagesOpt,
    TagOpt,
    TimeoutOpt,
    load_kwargs,
)
from barfast.status import BarfastError, ExitCode

EXIT_CODES_HELP = (
    "Exit codes: 0 the run completed (HTTP errors are data); 2 usage or configuration error; "
    "3 no load could be generated, or a worker was lost; 4 compare --fail-on crossed; 99 a "
    "threshold failed (every report written); 130 interrupted (partial report printed)."
)

app = typer.Typer(
    name="barfast",
    help="HTTP load engine with a native core that measures truthfully.\n\n" + EXIT_CODES_HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = typer.Typer(help="Benchmark barfast's own parts.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
k8s_app = typer.Typer(help="Run barfast on Kubernetes (docs/kubernetes.md).", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"barfast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command(
    help="Load-test URL (or, with no URL, the embedded target for a few seconds).\n\n"
    + EXIT_CODES_HELP
)
def run(
    url: Annotated[
        str | None,
        typer.Argument(
            help="http[s]://HOST[:PORT]/PATH, or a scenario file (.yaml, .yml, .py; "
            "docs/scenarios.md); omit to test the embedded target"
        ),
    ] = None,
    connections: ConnectionsOpt = None,
    duration: DurationOpt = None,
    requests: RequestsOpt = None,
    method: MethodOpt = None,
    header: HeaderOpt = None,
    body: BodyOpt = None,
    body_file: Annotated[
        str | None, typer.Option("--body-file", help="Read the request body from a file.")
    ] = None,
    timeout: TimeoutOpt = None,
    connect_timeout: ConnectTimeoutOpt = None,
    rate: RateOpt = None,
    stages: StagesOpt = None,
    arrival: ArrivalOpt = None,
    max_connections: MaxConnectionsOpt = None,
    naps: NapsOpt = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "-w", "--workers", "-t", "--threads", help="Worker processes (default: CPUs available)."
        ),
    ] = None,
    latency: LatencyOpt = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the JSON report to FILE.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the JSON report to stdout.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only the final report.")] = False,
    html: Annotated[
        str | None, typer.Option("--html", help="Write the report as one HTML page to FILE.")
    ] = None,
    hlog: Annotated[
        str | None, typer.Option("--hlog", help="Write an HdrHistogram interval log to FILE.")
    ] = None,
    csv_dir: Annotated[
        str | None,
        typer.Option("--csv", help="Write series.csv and endpoints.csv into DIR."),
    ] = None,
    bind: Annotated[
        str | None,
        typer.Option("--bind", help="Coordinator address for remote workers, tcp://ADDR:PORT."),
    ] = None,
    expect_workers: Annotated[
        int, typer.Option("--expect-workers", help="Wait for N remote workers before starting.")
    ] = 0,
    wait_timeout: Annotated[
        str, typer.Option("--wait-timeout", help="How long to wait for remote workers.")
    ] = "30s",
    curve_secret: Annotated[
        str | None, typer.Option("--curve-secret", help="Coordinator's CURVE secret key file.")
    ] = None,
    curve_clients: Annotated[
        str | None,
        typer.Option("--curve-clients", help="Folder of authorised worker public key files."),
    ] = None,
    fail_on_worker_loss: FailOnWorkerLossOpt = False,
    seed: SeedOpt = None,
    tag: TagOpt = None,
    insecure: InsecureOpt = False,
    cacert: Annotated[
        str | None,
        typer.Option("--cacert", help="https: verify against this CA bundle (PEM) only."),
    ] = None,
    cert: Annotated[
        str | None, typer.Option("--cert", help="https: client certificate (PEM) for mTLS.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="https: the client certificate's key (default: in --cert)."),
    ] = None,
    servername: ServernameOpt = None,
    tls_resume: Annotated[
        bool,
        typer.Option(
            "--tls-resume/--no-tls-resume",
            help="https: resume TLS sessions on reconnects (default on; off: full handshakes).",
        ),
    ] = True,
    unix_socket: Annotated[
        str | None,
        typer.Option(
            "--unix-socket", help="Connect to this unix socket (the URL gives Host and path)."
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="Pass/fail gate on the merged result, e.g. 'p99<200ms', 'error_rate<1%', "
            "'p95{endpoint=login}<300ms, abort_on_fail, delay=10s' (repeatable; exit 99 when "
            "one fails; docs/thresholds.md).",
        ),
    ] = None,
    junit: Annotated[
        str | None,
        typer.Option("--junit", help="Write the thresholds as JUnit XML to FILE (for CI)."),
    ] = None,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            help="Serve the run's live figures as Prometheus/OpenMetrics at "
            "http://HOST:PORT/metrics (docs/metrics.md).",
        ),
    ] = None,
    metrics_linger: Annotated[
        str,
        typer.Option(
            "--metrics-linger",
            help="Keep /metrics up this long after the run, so a scraper gets the final figures.",
        ),
    ] = "0s",
    metrics_url: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics-url",
            help="Scrape the target's Prometheus metrics at URL every second onto the run's "
            "timeline (repeatable).",
        ),
    ] = None,
    metrics_match: Annotated[
        str | None,
        typer.Option(
            "--metrics-match",
            help="Regex of the scraped series to keep (default: process CPU, memory and fds, "
            "barfast serve's counters).",
        ),
    ] = None,
) -> None:
    from barfast.command import run_command
    from barfast.report.outputs import Outputs

    code = run_command(
        url=url,
        **load_kwargs(locals()),
        workers=workers,
        output=output,
        json_out=json_out,
        outputs=Outputs(html=html, hlog=hlog, csv_dir=csv_dir),
        quiet=quiet,
        bind=bind,
        expect_workers=expect_workers,
        wait_timeout=wait_timeout,
        curve_secret=curve_secret,
        curve_clients=curve_clients,
        thresholds=threshold or [],
        junit=junit,
        metrics=dict(
            addr=metrics_addr, linger=metrics_linger, urls=metrics_url or [], match=metrics_match
        ),
        transport=dict(
            insecure=insecure,
            cacert=cacert,
            cert=cert,
            key=key,
            servername=servername,
            tls_resume=tls_resume,
            unix_socket=unix_socket,
        ),
    )
    raise typer.Exit(int(code))


@app.command(help="Render a saved JSON report again: text, HTML, CSV, HdrHistogram log.")
def report(
    path: Annotated[str, typer.Argument(help="A JSON report (barfast run -o FILE).")],
    html: Annotated[
        str | None, typer.Option("--html", help="Write the report as one HTML page to FILE.")
    ] = None,
    text: Annotated[bool, typer.Option("--text", help="Print the text report.")] = False,
    latency: Annotated[
        bool, typer.Option("--latency", help="With --text: the full percentile spectrum.")
    ] = False,
    csv_dir: Annotated[
        str | None, typer.Option("--csv", help="Write series.csv and endpoints.csv into DIR.")
    ] = None,
    hlog: Annotated[
        str | None, typer.Option("--hlog", help="Write an HdrHistogram interval log to FILE.")
    ] = None,
) -> None:
    from barfast.report.command import report_command
    from barfast.report.outputs import Outputs

    outputs = Outputs(html=html, hlog=hlog, csv_dir=csv_dir)
    raise typer.Exit(int(report_command(path, outputs, text=text, latency=latency)))


@app.command(help="Compare two saved JSON reports: change per endpoint with a confidence interval.")
def compare(
    base: Annotated[str, typer.Argument(help="The baseline JSON report.")],
    new: Annotated[str, typer.Argument(help="The JSON report to compare with it.")],
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on", help="Exit 4 on a detected change past a limit, e.g. 'p99>+10%,rps<-5%'."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    from barfast.report.command import compare_command

    raise typer.Exit(int(compare_command(base, new, fail_on=fail_on, json_out=json_out)))


@app.command(help="Serve a fixed HTTP/1.1 response from the native core (a benchmark target).")
def serve(
    addr: Annotated[
        str, typer.Option("--addr", help="HOST:PORT to listen on (port 0: any free port).")
    ] = "127.0.0.1:8080",
    body_size: Annotated[
        int, typer.Option("--body-size", help="Response body size in bytes.")
    ] = 12,
    delay: Annotated[
        str | None, typer.Option("--delay", help="Fixed delay before each response, e.g. 2ms.")
    ] = None,
    delay_dist: Annotated[
        str | None,
        typer.Option(
            "--delay-dist",
            help="Random delay added to --delay: uniform:LO-HI (uniform:1ms-3ms) or exp:MEAN (exp:2ms).",
        ),
    ] = None,
    stall: Annotated[
        str | None,
        typer.Option(
            "--stall", help="Freeze the whole server: 500ms/2s = the last 500 ms of every 2 s."
        ),
    ] = None,
    status_mix: Annotated[
        str | None,
        typer.Option(
            "--status-mix", help="Weighted statuses, e.g. 200:95,500:5 (seeded, deterministic)."
        ),
    ] = None,
    close_every: Annotated[
        int, typer.Option("--close-every", help="Close the connection after every N responses.")
    ] = 0,
    duration: Annotated[
        str | None,
        typer.Option("-d", "--duration", help="Exit after this long (default: until Ctrl-C)."),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option("--tls-key", help="The certificate's private key (default: in --tls-cert)."),
    ] = None,
    tls_resume: Annotated[
        bool,
        typer.Option(
            "--tls-resume/--no-tls-resume",
            help="HTTPS: let clients resume sessions (default on; off: every handshake in full).",
        ),
    ] = True,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency",
            help="At most N requests in service (needs a fixed --delay): capacity = N / delay.",
        ),
    ] = 0,
    sessions: Annotated[
        bool,
        typer.Option(
            "--sessions",
            help="POST /login issues a token and a cookie; other requests need both (else 401).",
        ),
    ] = False,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            help="Serve the server's own counters as Prometheus/OpenMetrics at "
            "http://HOST:PORT/metrics (':PORT' = loopback).",
        ),
    ] = None,
) -> None:
    from barfast.serve.server import serve_command

    raise typer.Exit(
        int(
            serve_command(
                addr=addr,
                body_size=body_size,
                delay=delay,
                delay_dist=delay_dist,
                stall=stall,
                status_mix=status_mix,
                close_every=close_every,
                duration=duration,
                tls_cert=tls_cert,
                tls_key=tls_key,
                tls_resume=tls_resume,
                max_concurrency=max_concurrency,
                sessions=sessions,
                metrics=metrics,
            )
        )
    )


@app.command(help="Run a worker that takes plans from a coordinator (for multi-host runs).")
def worker(
    connect: Annotated[
        str, typer.Option("--connect", help="Coordinator address, tcp://HOST:PORT.")
    ],
    curve_secret: Annotated[
        str | None, typer.Option("--curve-secret", help="This worker's CURVE secret key file.")
    ] = None,
    curve_server: Annotated[
        str | None,
        typer.Option("--curve-server", help="The coordinator's CURVE public key file."),
    ] = None,
    idle_timeout: Annotated[
        str, typer.Option("--idle-timeout", help="Exit if no coordinator is heard for this long.")
    ] = "60s",
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Serve one run and exit with its code (3 if no plan came within --idle-timeout).",
        ),
    ] = False,
    result_file: Annotated[
        str | None,
        typer.Option(
            "--result-file",
            help="Also write this worker's exact result (JSON) here after each run, for "
            "`barfast merge`; it always goes to stderr as a 'barfast-result: ' line.",
        ),
    ] = None,
) -> None:
    from barfast.fanout.worker import worker_command

    raise typer.Exit(
        int(
            worker_command(
                connect=connect,
                curve_secret=curve_secret,
                curve_server=curve_server,
                idle_timeout=idle_timeout,
                once=once,
                result_file=result_file,
            )
        )
    )


@app.command(
    help="Merge remote workers' result files (or their logs) into the run's report, as the "
    "coordinator would have made it.\n\nExit codes: 0 merged; 2 a file is not a result of one "
    "run; 3 merged, but partial (a worker's run ended early, or a worker's result is missing)."
)
def merge(
    files: Annotated[
        list[str],
        typer.Argument(help="Worker result files (--result-file) or logs with result lines."),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the JSON report to stdout.")
    ] = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the JSON report to FILE.")
    ] = None,
    latency: Annotated[
        bool, typer.Option("--latency", help="Print the full percentile spectrum.")
    ] = False,
) -> None:
    from barfast.result.workerfile import merge_command

    raise typer.Exit(int(merge_command(files, json_out=json_out, output=output, latency=latency)))


@app.command(help="Generate a CURVE key pair: NAME.key (public) and NAME.key_secret in DIR.")
def keys(
    name: Annotated[str, typer.Argument(help="Base name of the key files.")],
    directory: Annotated[str, typer.Option("--dir", help="Where to write the key files.")] = ".",
) -> None:
    from barfast.fanout.keys import keys_command

    raise typer.Exit(int(keys_command(name=name, directory=directory)))


@k8s_app.command(
    "render",
    help="Print the manifests of one distributed run (a Secret of CURVE keys, a ConfigMap of the "
    "scenario's files, a headless Service, a coordinator Job and an Indexed Job of worker pods) "
    "for `kubectl apply -f -`.\n\nExit codes: 0 printed; 2 a bad option or file (one line on "
    "stderr).",
)
def k8s_render(
    url: Annotated[
        str | None,
        typer.Argument(help="http://HOST[:PORT]/PATH as the pods see it, or a YAML scenario file"),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker pods (one CPU each).")] = 1,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Namespace of every object.")
    ] = None,
    image: Annotated[
        str, typer.Option("--image", help="The barfast image (the repository's Dockerfile).")
    ] = "barfast:latest",
    name: Annotated[
        str | None,
        typer.Option("--name", help="The run's name, prefix of every object (default: random)."),
    ] = None,
    wait_timeout: Annotated[
        str, typer.Option("--wait-timeout", help="How long the coordinator waits for workers.")
    ] = "5m",
    ttl: Annotated[
        str, typer.Option("--ttl", help="Delete the finished Jobs and their pods after this long.")
    ] = "1h",
    memory: Annotated[
        str, typer.Option("--memory", help="Memory request = limit of each pod.")
    ] = "512Mi",
    results_claim: Annotated[
        str | None,
        typer.Option(
            "--results-claim",
            help="A PersistentVolumeClaim (ReadWriteMany) for the reports and worker results "
            "(default: an emptyDir; the logs hold them too).",
        ),
    ] = None,
    connections: ConnectionsOpt = None,
    duration: DurationOpt = None,
    requests: RequestsOpt = None,
    method: MethodOpt = None,
    header: HeaderOpt = None,
    body: BodyOpt = None,
    body_file: Annotated[
        str | None, typer.Option("--body-file", help="Request body file (into the ConfigMap).")
    ] = None,
    timeout: TimeoutOpt = None,
    connect_timeout: ConnectTimeoutOpt = None,
    rate: RateOpt = None,
    stages: StagesOpt = None,
    arrival: ArrivalOpt = None,
    max_connections: MaxConnectionsOpt = None,
    naps: NapsOpt = True,
    latency: LatencyOpt = False,
    fail_on_worker_loss: FailOnWorkerLossOpt = False,
    seed: SeedOpt = None,
    tag: TagOpt = None,
    insecure: InsecureOpt = False,
    cacert: Annotated[
        str | None,
        typer.Option("--cacert", help="https: CA bundle (PEM), into the ConfigMap of every pod."),
    ] = None,
    servername: ServernameOpt = None,
) -> None:
    from barfast.k8s.render import render_command

    raise typer.Exit(
        int(
            render_command(
                url,
                workers=workers,
                namespace=namespace,
                image=image,
                name=name,
                wait_timeout=wait_timeout,
                ttl=ttl,
                memory=memory,
                results_claim=results_claim,
                **load_kwargs(locals()),
                insecure=insecure,
                cacert=cacert,
                servername=servername,
            )
        )
    )


@app.command(
    help="Find the highest open-loop rate at which every --slo holds (ramp, then bisection; "
    "docs/thresholds.md). Exit codes: 0 an answer; 2 usage; 3 no load; 99 no rate holds."
)
def search(
    target: Annotated[str, typer.Argument(help="URL or scenario file.")],
    slo: Annotated[
        list[str] | None,
        typer.Option(
            "--slo", help="A threshold every step must hold, e.g. 'p99<50ms' (repeatable)."
        ),
    ] = None,
    start_rate: Annotated[
        str, typer.Option("--start-rate", help="First step's rate (req/s).")
    ] = "100",
    max_rate: Annotated[
        str, typer.Option("--max-rate", help="Highest rate tried (req/s).")
    ] = "1000000",
    step_duration: Annotated[
        str, typer.Option("--step-duration", help="Measured time per step (after the warm-up).")
    ] = "3s",
    warmup: Annotated[
        str, typer.Option("--warmup", help="Start of each step left out of its verdict.")
    ] = "1s",
    precision: Annotated[
        str, typer.Option("--precision", help="Stop when the bracket is this narrow.")
    ] = "5%",
    noise: Annotated[
        str, typer.Option("--noise", help="Repeat a step whose figure is this close to its limit.")
    ] = "5%",
    max_steps: Annotated[int, typer.Option("--max-steps", help="At most this many trials.")] = 30,
    cooldown: Annotated[
        str, typer.Option("--cooldown", help="Pause between steps (the target's queue drains).")
    ] = "1s",
    connections: Annotated[
        int | None, typer.Option("-c", "--connections", help="Connections per step.")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option("--max-connections", help="Open loop: grow up to this many.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("-w", "--workers", help="Worker processes.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the JSON to FILE.")
    ] = None,
    html: Annotated[
        str | None,
        typer.Option("--html", help="Write the latency-vs-rate curve as one HTML page to FILE."),
    ] = None,
) -> None:
    from barfast.search.command import search_command

    code = search_command(
        target,
        slos=slo or [],
        start_rate=start_rate,
        max_rate=max_rate,
        step_duration=step_duration,
        warmup=warmup,
        precision=precision,
        noise=noise,
        max_steps=max_steps,
        cooldown=cooldown,
        connections=connections,
        max_connections=max_connections,
        workers=workers,
        json_out=json_out,
        output=output,
        html=html,
    )
    raise typer.Exit(int(code))


@bench_app.command("ring", help="Benchmark the sample ring cross-process (records/s, GB/s).")
def bench_ring(
    records: Annotated[
        int, typer.Option("--records", help="Records per measurement.")
    ] = 50_000_000,
    capacity: Annotated[
        int, typer.Option("--capacity", help="Ring capacity in records (power of two).")
    ] = 1 << 16,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    from barfast.engine.ringbench import ring_command

    raise typer.Exit(int(ring_command(records=records, capacity=capacity, json_out=json_out)))


def run_app(argv: list[str] | None = None) -> None:
    """Run the CLI; every expected failure is one line on stderr and a documented exit code."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = command.main(args=args, prog_name="barfast", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except Exit as exc:
        code = exc.exit_code
    except UsageError as exc:
        print(f"barfast: error: {exc.format_message()}", file=sys.stderr)
        code = ExitCode.USAGE
    except Abort:
        code = ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except BarfastError as exc:
        if _state["debug"]:
            raise
        print(f"barfast: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except ClickException as exc:
        print(f"barfast: error: {exc.format_message()}", file=sys.stderr)
        code = exc.exit_code
    except Exception as exc:  # a bug: still one line unless --debug
        if _state["debug"]:
            raise
        print(
            f"barfast: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        code = 1
    sys.exit(int(code))
