"""barfast.run() and Result: the same run as `barfast run`, its report as attributes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import barfast
from barfast.api import Result
from barfast.scenario.model import ScenarioError
from barfast.status import NoLoadError, UsageError


def test_a_url_run_is_the_cli_report(nginx) -> None:
    r = barfast.run(nginx.url, requests=500, connections=2, workers=1)
    assert (r.requests, r.completed, r.errors, r.error_rate) == (500, 500, 0, 0.0)
    assert r.status == {200: 500} and r.exit_code == 0
    assert r.raw["schema"] == "barfast.report/1" and r.raw["config"]["url"] == nginx.url
    assert r.latency is not None and r.latency.count == 500
    assert r.latency.min <= r.latency.p50 <= r.latency.p99 <= r.latency.max
    assert repr(r).startswith("<Result ") and "500 completed, 0 errors" in repr(r)


def test_a_scenario_file_and_kwargs_override_its_load(nginx, tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"target: {nginx.url}\nload: {{connections: 3, requests: 50}}\n"
        "requests:\n  - {name: a, path: /a}\n  - {name: b, path: /b}\n"
    )
    r = barfast.run(str(p), requests=300, workers=1)
    assert r.completed == 300 and r.config["connections"] == 3
    assert sum(e.completed for e in r.endpoints.values()) == 300


def test_a_scenario_object(nginx) -> None:
    sc = barfast.Scenario(
        target=nginx.url,
        requests=[barfast.Request("x", path="/x", checks=(barfast.Check.status_in(200),))],
        tags={"env": "test"},
    )
    r = barfast.run(sc, requests=100, connections=1, workers=1)
    assert r.endpoints["x"].completed == 100 and r.checks == {"passed": 100, "failed": 0}
    assert r.tags == {"env": "test"}


def test_bad_input_raises_what_the_cli_says() -> None:
    with pytest.raises(
        UsageError, match=r"unknown option 'conections' \(did you mean 'connections'\?\)"
    ):
        barfast.run("http://127.0.0.1:9/", conections=1)
    with pytest.raises(UsageError, match="bad --connections 0: must be at least 1"):
        barfast.run("http://127.0.0.1:9/", connections=0)
    with pytest.raises(ScenarioError):
        barfast.run("/nonexistent/s.yaml")
    with pytest.raises(NoLoadError, match="every connection to 127.0.0.1:9 failed"):
        barfast.run("http://127.0.0.1:9/", requests=5, connections=1, workers=1)


def test_from_json_reads_a_saved_report(nginx, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "barfast",
            "run",
            nginx.url,
            "-n",
            "200",
            "-c",
            "2",
            "-w",
            "1",
            "--json",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (tmp_path / "r.json").write_text(out.stdout)
    r = Result.from_json(tmp_path / "r.json")
    assert r.completed == 200 and r.status == {200: 200}
    assert Result.from_json(json.loads(out.stdout)).completed == 200
