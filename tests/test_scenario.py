"""Scenarios: YAML and Python front ends, errors at FILE:LINE:COL, and the mix as the server saw it.

Real processes and sockets: `barfast run scenario.yaml` against nginx (its access log counts each
path) and against the built-in target with a status mix.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from barfast.scenario.compile import compile_run, load_options
from barfast.scenario.load import load_scenario
from barfast.scenario.model import Check, Request, Scenario, ScenarioError


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def barfast(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barfast", *args], capture_output=True, text=True, timeout=timeout
    )


FULL = """
target: http://127.0.0.1:8080
load: {connections: 100, duration: 30s}
defaults: {headers: {Accept: application/json}}
requests:
  - {name: home, weight: 70, path: /}
  - name: item
    weight: 25
    get: /items/1?v=2
    checks: [{status: 2xx}, {status: [200, 404]}]
  - {name: order, weight: 5, post: /orders, json: {user: 7, qty: 1}}
tags: {env: staging}
tag_header: X-Load-
seed: 9
"""


def test_the_full_example_loads_into_the_model(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, FULL))
    assert sc.target == "http://127.0.0.1:8080"
    assert sc.load == {"connections": 100, "duration": "30s"}
    assert [r.name for r in sc.requests] == ["home", "item", "order"]
    assert [r.weight for r in sc.requests] == [70, 25, 5]
    item, order = sc.requests[1], sc.requests[2]
    assert (item.method, item.path) == ("GET", "/items/1?v=2")
    assert item.checks == (
        Check(((200, 299),), "status 2xx"),
        Check(((200, 200), (404, 404)), "status 200,404"),
    )
    assert (order.method, order.json) == ("POST", {"user": 7, "qty": 1})
    assert sc.tags == {"env": "staging"} and sc.seed == 9
    cfg = compile_run(sc, **load_options(sc, {"connections": 10}))
    assert cfg.connections == 10  # a flag overrides the file's load
    assert cfg.duration_ns == 30 * 10**9
    req = cfg.endpoints[2].request
    assert req.startswith(b"POST /orders HTTP/1.1\r\n")
    assert b"\r\nAccept: application/json\r\n" in req and b"\r\nX-Load-env: staging\r\n" in req
    assert req.endswith(b"Content-Length: 18\r\n\r\n" + b'{"user":7,"qty":1}')
    assert [c[2] for c in cfg.endpoints[1].engine_checks] == [
        ((200, 299),),
        ((200, 200), (404, 404)),
    ]  # two checks, each counted (a response must pass both)


def test_a_minimal_file_is_a_url(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, "http://127.0.0.1:8080/x\n"))
    assert sc.target == "http://127.0.0.1:8080/x" and len(sc.requests) == 1
    sc = load_scenario(write(tmp_path, "target: http://127.0.0.1:8080/\n"))
    assert [(r.method, r.path) for r in sc.requests] == [("GET", "/")]


def test_the_python_front_end_builds_the_same_scenario(tmp_path: Path) -> None:
    py = write(
        tmp_path,
        """
        import barfast

        scenario = barfast.Scenario(
            target="http://127.0.0.1:8080",
            requests=[
                barfast.Request(name=f"page{i}", path=f"/p/{i}", weight=i + 1) for i in range(3)
            ],
            load={"connections": 4},
        )
        """,
        "s.py",
    )
    yml = write(
        tmp_path,
        """
        target: http://127.0.0.1:8080
        load: {connections: 4}
        requests:
          - {name: page0, path: /p/0, weight: 1}
          - {name: page1, path: /p/1, weight: 2}
          - {name: page2, path: /p/2, weight: 3}
        """,
    )
    assert load_scenario(py) == load_scenario(yml)


def test_model_checks_in_python() -> None:
    with pytest.raises(ScenarioError, match="weight must be > 0"):
        Request(name="a", weight=0)
    with pytest.raises(ScenarioError, match="duplicate request name 'a'"):
        Scenario(target="http://h/", requests=[Request(name="a"), Request(name="a")])
    with pytest.raises(ScenarioError, match="bad status '7xx'"):
        Check.status_in("7xx")


BAD = [
    ("target: [unclosed\n", "2:1", "expected ',' or ']'"),
    (
        "target: http://h/\nrequests:\n  - {name: a, wieght: 2}\n",
        "3:15",
        "unknown key 'wieght' in request (did you mean 'weight'?)",
    ),
    ("targte: http://h/\n", "1:1", "unknown key 'targte' in scenario (did you mean 'target'?)"),
    (
        "target: http://h/\nload: {conections: 4}\n",
        "2:8",
        "unknown key 'conections' in load (did you mean 'connections'?)",
    ),
    ("target: http://h/\nrequests:\n  - {name: a, weight: 0}\n", "3:23", "weight must be > 0"),
    ("target: http://h/\nrequests:\n  - {name: a, weight: -3}\n", "3:23", "weight must be > 0"),
    (
        "target: http://h/\nrequests:\n  - {name: a}\n  - {name: a}\n",
        "4:5",
        "duplicate request name 'a' (first at line 3)",
    ),
    ("target: http://h/\nrequests:\n  - {name: a, path: x}\n", "3:21", "path must start with '/'"),
    ("target: http://h/\nrequests:\n  - {name: a, get: x}\n", "3:20", "path must start with '/'"),
    (
        "target: http://h/\nrequests:\n  - {name: a, get: /a, path: /b}\n",
        "3:15",
        "give one of path, url or get:/post:/... PATH",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, body: x, json: 1}\n",
        "3:24",
        "give one of body, body_file or json, not body and json",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, body_file: nope.bin}\n",
        "3:26",
        "cannot read body file 'nope.bin'",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{status: 7xx}]}\n",
        "3:33",
        "bad status '7xx'",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{stauts: 200}]}\n",
        "3:25",
        "unknown key 'stauts' in check (did you mean 'status'?)",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{}]}\n",
        "3:24",
        "a check has exactly one of status, header, body, json",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, get: '/i/{{ users.id }}'}\n",
        "3:20",
        "no data named 'users'",
    ),
    ("target: http://h/\ndata:\n  users: {csv: u.csv}\n", "3:16", "cannot read data file 'u.csv'"),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{json: 'a..b'}]}\n",
        "3:31",
        "bad JSON path 'a..b'",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{status: 200, equals: 1}]}\n",
        "3:38",
        "a status check takes no `equals`",
    ),
    (
        "target: http://h/\nrequests:\n  - {name: a, checks: [{json: a, equals: 1, exists: false}]}\n",
        "3:45",
        "give one of equals, exists",
    ),
    ("target: http://h/\nload: {connections: 0}\n", "2:21", "connections must be >= 1"),
    (
        "target: http://h/\nload: {arrival: burst}\n",
        "2:17",
        "arrival must be one of constant, poisson",
    ),
    ("target: not-a-url\n", "1:9", "target must be a URL"),
    ("target: http://h/\nrequests: []\n", "2:11", "requests must not be empty"),
    ("requests:\n  - {name: a}\n", "1:1", "no target"),
    ("target: http://h/\nrequests:\n  - {name: a, method: 'G T'}\n", "3:23", "bad method 'G T'"),
    (
        "target: http://h/\nrequests:\n  - {name: a, headers: {X: [1]}}\n",
        "3:28",
        "X must be a string or number",
    ),
    ("target: http://h/\ntarget: http://i/\n", "2:1", "duplicate key 'target'"),
    ("- 1\n- 2\n", "1:1", "a scenario is a mapping"),
    ("", "1:1", "the file is empty"),
]


@pytest.mark.parametrize(("text", "where", "message"), BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input_is_one_line_at_file_line_col(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}:{where}: "), msg
    assert message in msg, msg


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path: Path) -> None:
    p = write(tmp_path, "target: http://127.0.0.1:9/\nrequests:\n  - {name: a, weight: 0}\n")
    out = barfast("run", str(p))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"barfast: error: {p}:3:23: weight must be > 0", out.stderr
    broken = write(tmp_path, "scenario = 1/0\n", "bad.py")
    out = barfast("run", str(broken))
    assert (
        out.returncode == 2 and "ZeroDivisionError" in out.stderr and "Traceback" not in out.stderr
    )
    out = barfast("run", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "cannot read scenario" in out.stderr
    out = barfast("run", str(p), "-m", "POST")
    assert out.returncode == 2 and "a scenario sets its own" in out.stderr


def test_per_endpoint_counts_are_what_nginx_logged(nginx, tmp_path: Path) -> None:
    # Two workers, 300,000 requests over three weighted paths: the report's per-endpoint counts
    # (exact engine counters, merged) equal nginx's access log per path, and the shares are
    # within 4 standard deviations of the weights.
    p = write(
        tmp_path,
        f"""
        target: {nginx.url}
        load: {{connections: 8, requests: 300000}}
        requests:
          - {{name: home, weight: 70, path: /home}}
          - {{name: item, weight: 25, get: /item}}
          - {{name: order, weight: 5, post: /order, body: "x=1"}}
        """,
    )
    nginx.truncate_log()
    out = barfast("run", str(p), "-w", "2", "--json", "-q")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    n = 300_000
    assert rep["requests"]["completed"] == n and rep["errors"] == {}
    eps = rep["endpoints"]
    assert sum(e["requests"]["completed"] for e in eps.values()) == n
    assert nginx.wait_logged(n) == n
    logged = Counter(
        m.group(1).decode()
        for line in (nginx.run_dir / "access.log").read_bytes().splitlines()
        if (m := re.search(rb'"[A-Z]+ (\S+) HTTP', line))
    )
    assert {name: logged[f"/{name}"] for name in eps} == {
        name: e["requests"]["completed"] for name, e in eps.items()
    }
    for name, w in (("home", 70), ("item", 25), ("order", 5)):
        k, q = eps[name]["requests"]["completed"], w / 100
        assert abs(k - n * q) <= 4 * math.sqrt(n * q * (1 - q)), eps
    assert "home" in barfast("run", str(p), "-w", "1", "-n", "300", "-q").stdout


def test_checks_count_apart_from_errors_against_a_status_mix(tmp_path: Path) -> None:
    from serve_helpers import running

    with running("127.0.0.1", statuses=[(200, 9), (500, 1)], seed=5) as srv:
        p = write(
            tmp_path,
            f"""
            target: http://127.0.0.1:{srv.port}/
            load: {{connections: 4, requests: 20000}}
            requests:
              - {{name: checked, path: /c, checks: [{{status: 2xx}}]}}
              - {{name: plain, path: /p}}
            """,
        )
        out = barfast("run", str(p), "-w", "1", "--json", "-q")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["errors"] == {} and rep["requests"]["completed"] == 20_000
    checked = rep["endpoints"]["checked"]
    assert "checks" not in rep["endpoints"]["plain"]
    n, bad = checked["requests"]["completed"], checked["checks"]["failed"]
    assert checked["checks"]["passed"] == n - bad
    assert rep["checks"] == {"passed": n - bad, "failed": bad}
    assert abs(bad - 0.1 * n) <= 4 * math.sqrt(n * 0.1 * 0.9), checked
    # latency still covers every response, failed checks included
    assert rep["latency_ms"]["count"] == 20_000


def test_header_body_and_json_checks_load_from_yaml(tmp_path: Path) -> None:
    sc = load_scenario(
        write(
            tmp_path,
            """
            target: http://127.0.0.1:9/
            defaults: {max_body_for_checks: 4096}
            requests:
              - name: a
                checks:
                  - {header: Content-Type, equals: application/json}
                  - {header: Server, contains: nginx, name: served by nginx}
                  - {body: hello}
                  - {json: data.items.0.id, equals: 7}
                  - {json: error, exists: false}
            """,
        )
    )
    assert sc.max_body_for_checks == 4096
    assert [c.name for c in sc.requests[0].checks] == [
        "header Content-Type == 'application/json'",
        "served by nginx",
        "body contains 'hello'",
        "json data.items.0.id == 7",
        "json error absent",
    ]
    eps = compile_run(sc, **load_options(sc, {})).endpoints
    assert [c[:2] for c in eps[0].engine_checks] == [(2, 2), (2, 3), (3, 3), (4, 2), (4, 1)]
    assert eps[0].engine_checks[3][3:] == (b"data.items.0.id", b"7")
