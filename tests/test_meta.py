"""Run metadata in the JSON report: version, host, start time, and the git commit and branch of the
directory the run started in (a real repository made here), credentials redacted in the config."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

import barfast
from barfast.result.meta import git_info
from conftest import barfast_cmd
from test_open_loop import Served

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _repo(path: Path) -> str:
    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a], cwd=path, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "trunk")
    (path / "f").write_text("x\n")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return git("rev-parse", "HEAD")


@needs_git
def test_git_info_of_a_repository_and_of_none(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    commit = _repo(repo)
    assert git_info(str(repo)) == {"commit": commit, "branch": "trunk", "dirty": False}
    (repo / "f").write_text("changed\n")
    assert git_info(str(repo))["dirty"] is True  # type: ignore[index]
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / ".git").write_text("")  # stop git's search at this directory: not a repository
    assert git_info(str(alone)) is None


@needs_git
def test_report_meta_and_effective_config(tmp_path: Path) -> None:
    commit = _repo(tmp_path)
    srv = Served()
    try:
        p = subprocess.run(
            barfast_cmd(
                "run", srv.url, "-n", "200", "-c", "2", "-w", "1", "-q", "--json",
                "-H", "Authorization: Bearer secret", "-H", "X-Trace: 7", "--seed", "5",
                "--tag", "build=42",
            ),
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    meta = rep["meta"]
    assert meta["barfast_version"] == barfast.__version__
    assert meta["host"] == socket.gethostname()
    assert meta["git"] == {"commit": commit, "branch": "trunk", "dirty": False}
    assert meta["started_at"].endswith("Z")
    cfg = rep["config"]
    assert cfg["headers"] == [["Authorization", "(redacted)"], ["X-Trace", "7"]]
    assert "secret" not in p.stdout
    assert cfg["seed"] == 5 and cfg["tags"] == {"build": "42"} and cfg["body_bytes"] == 0
