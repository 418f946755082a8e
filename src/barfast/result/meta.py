"""Run metadata for the JSON report's `meta`: what tells runs apart in CI and dashboards (barfast
version, host, Python, when the run started, and the git commit and branch of the directory it ran
in, when that is inside a repository). Read once per run, in the coordinator, never per request."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
from typing import Any

GIT_TIMEOUT_S = 2.0  # a slow network file system must not hold the report up
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key")


def _git(*args: str, cwd: str) -> str | None:
    try:
        p = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def git_info(cwd: str | None = None) -> dict[str, Any] | None:
    """{commit, branch, dirty} of the repository holding `cwd`, or None (no git, no repository)."""
    if shutil.which("git") is None:
        return None
    where = cwd or os.getcwd()
    commit = _git("rev-parse", "HEAD", cwd=where)
    if not commit:
        return None
    branch = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=where)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=where)
    return {
        "commit": commit,
        "branch": None if branch in (None, "HEAD") else branch,  # HEAD: a detached checkout
        "dirty": bool(status),
    }


def _platform() -> str:
    """platform.platform()'s text without its `uname -p` child process (the processor field it
    never prints on Linux costs a fork of the whole coordinator at every run)."""
    u = os.uname()
    libc, ver = platform.libc_ver()
    tail = f"-with-{libc}{ver}" if libc else ""
    return f"{u.sysname}-{u.release}-{u.machine}{tail}"


def run_meta(started_unix: float) -> dict[str, Any]:
    from barfast import __version__

    out: dict[str, Any] = {
        "barfast_version": __version__,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": _platform(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_unix)),
    }
    git = git_info()
    if git:
        out["git"] = git
    return out


def redact_headers(headers: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """The request headers as sent, with credentials' values replaced: a report gets shared."""
    return [[n, "(redacted)" if n.lower() in SECRET_HEADERS else v] for n, v in headers]


__all__ = ["git_info", "redact_headers", "run_meta"]
