"""Exit codes and the exceptions that map onto them: the one place the CLI turns failures into codes.

| code | meaning |
|------|---------|
| 0    | the run completed (HTTP error statuses and request errors are data, not failures) |
| 2    | usage or configuration error: one line on stderr says what is wrong |
| 3    | no load could be generated (every connection refused, name does not resolve), or a worker was lost; `barfast merge`: the merged report is partial |
| 4    | `barfast compare --fail-on`: a detected change crossed a limit |
| 99   | the run completed but a threshold (`--threshold`, a scenario's `thresholds`) failed; every report is written |
| 130  | interrupted (Ctrl-C); the partial report is printed first |
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    NO_LOAD = 3
    REGRESSION = 4
    # k6's code for the same outcome: CI scripts written for it read barfast's the same way
    THRESHOLDS_FAILED = 99
    INTERRUPTED = 130


class BarfastError(Exception):
    """Base of every expected failure: printed as one line, never as a traceback."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(BarfastError):
    """Bad command-line input or configuration."""

    exit_code = ExitCode.USAGE


class NoLoadError(BarfastError):
    """The target could not be loaded at all (resolution failed, every connection refused...)."""

    exit_code = ExitCode.NO_LOAD


class WorkerLostError(BarfastError):
    """A worker went silent or died during the run."""

    exit_code = ExitCode.NO_LOAD


class ProtocolError(BarfastError):
    """A peer spoke a different protocol version or sent a malformed message."""

    exit_code = ExitCode.NO_LOAD
