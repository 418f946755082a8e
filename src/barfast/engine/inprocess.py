"""One run in this process: one EngineRunner, its snapshots into a Merger, the report dict.

Ctrl-C and SIGTERM stop the engine cleanly (`sigint_calls`), so an interrupted run still gives a
complete partial report.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from barfast.config import RunConfig
from barfast.engine.runner import EngineFactory, EngineRunner, Snapshot
from barfast.fanout.plan import split_plan
from barfast.result import Merger, config_info


@dataclass
class LocalRun:
    report: dict[str, Any]
    interrupted: bool
    merger: Merger


@contextlib.contextmanager
def sigint_calls(action: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT (Ctrl-C) and SIGTERM call `action` instead of ending the process.

    The engine then stops cleanly, the ring is drained, and the final snapshot is complete: a
    KeyboardInterrupt raised at an arbitrary bytecode could split a batch between aggregator and ring.
    Outside the main thread signals cannot be handled; then this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        action()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def run_local(
    cfg: RunConfig,
    *,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    extra_config: dict[str, Any] | None = None,
    engine_factory: EngineFactory | None = None,
) -> LocalRun:
    """Run cfg in this process with one engine; Ctrl-C gives a partial (interrupted) report.
    `engine_factory` (benchmarks) builds the engine instead of runner.default_engine."""
    plan = split_plan(cfg, 1)[0]
    merger = Merger()

    def snap(s: Snapshot) -> None:
        merger.add(s)
        if on_snapshot is not None:
            on_snapshot(s)

    runner = EngineRunner(plan, snap, engine_factory=engine_factory)
    with sigint_calls(runner.interrupt):
        runner.run()
    info = config_info(cfg, workers=1)
    if extra_config:
        info.update(extra_config)
    return LocalRun(merger.report(info), runner.interrupted, merger)
