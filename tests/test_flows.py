"""Flows: virtual users that log in, carry a token and think, run in the native loop.

Real processes and sockets: `barfast run` / barfast.run() against `barfast serve --sessions` (issues a
token and a cookie per login, answers 401 to anything else without both) and against servers written
here with Python sockets (responses split at every byte, echoing what the user sent back).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import barfast
from barfast import Capture, Check, Flow, Repeat, Request, Scenario, Think
from barfast.scenario.compile import compile_run
from barfast.scenario.load import load_scenario
from barfast.scenario.model import ScenarioError
from serve_helpers import Client, connect, get, header, running, tcp_server

pytestmark = pytest.mark.timeout(120)

AUTH = {"Authorization": "Bearer {{ token }}"}
OK200 = (Check.status_in(200),)


def shop(url: str, think: Think | None = None, **flow: Any) -> Scenario:
    """The issue's 4-step flow: login (JSON body, token captured from JSON), two GETs that send the
    token, one POST."""
    steps: list[Any] = [
        Request(
            "login",
            "/login",
            method="POST",
            json={"user": "u{{ seq }}", "password": "pw"},
            captures=(Capture.json("token", "token"),),
            checks=OK200,
        ),
        Repeat(2, (Request("items", "/items", headers=AUTH, checks=OK200),)),
    ]
    if think is not None:
        steps.append(think)
    steps.append(
        Request("order", "/order", method="POST", headers=AUTH, json={"qty": 1}, checks=OK200)
    )
    return Scenario(target=url, flows=(Flow("shop", steps=tuple(steps), **flow),))


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


# ------------------------------------------------------------------ the sessions target itself


def test_sessions_target_issues_tokens_and_rejects_anything_else() -> None:
    with running(sessions=True) as srv:
        s = connect(srv)
        c = Client(s)
        s.sendall(get("/login", method="POST", extra="Content-Length: 2\r\n") + b"{}")
        resp, data = c.expect(method="POST", body=b"{}")
        assert resp.status_code == 200
        token = json.loads(data)["token"]
        assert token == srv.session_token(0) and len(token) == 24
        set_cookie = header(resp, b"set-cookie")
        assert set_cookie is not None
        cookie = set_cookie.split(b";")[0].decode()
        assert cookie == f"sid={token[:8]}"
        ok = f"Authorization: Bearer {token}\r\nCookie: a=1; {cookie}\r\n"
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        other = srv.session_token(5)
        cases = [
            (ok, 200),
            ("", 401),  # no token
            (f"Cookie: {cookie}\r\n", 401),
            (f"Authorization: Bearer {token}\r\n", 401),  # no cookie
            (f"Authorization: Bearer {forged}\r\nCookie: {cookie}\r\n", 401),
            (f"Authorization: Bearer {other}\r\nCookie: {cookie}\r\n", 401),  # another user's
            (f"Authorization: Bearer {token[:20]}\r\nCookie: {cookie}\r\n", 401),
        ]
        for extra, want in cases:
            s.sendall(get("/items", extra=extra))
            assert c.expect()[0].status_code == want, extra
        k = srv.counters()
        assert (k["logins"], k["authorized"], k["rejected"]) == (1, 1, 6)
        assert srv.status_counts() == {200: 2, 401: 6}  # the login and the authorized GET
        s.close()


# ------------------------------------------------------------------ definitions


FLOW_YAML = """
target: http://127.0.0.1:8080
data:
  users: {csv: users.csv}
load: {connections: 10, iterations: 500}
flows:
  - name: shop
    weight: 3
    steps:
      - name: login
        post: /login
        json: {user: "{{ users.name }}"}
        capture:
          token: {json: data.token}
          where: {header: Location}
          id: {between: ['"id":"', '"']}
      - think: 500ms
      - repeat: 2
        steps:
          - name: item
            get: /items/{{ id }}
            headers: {Authorization: "Bearer {{ token }}"}
      - think: {uniform: [100ms, 1s]}
      - think: {exponential: 300ms}
      - {name: order, post: "/order?at={{ where }}", body: "t={{ token }}"}
  - name: browse
    cookies: false
    on_capture_fail: skip
    steps:
      - get: /
"""


def test_a_yaml_flow_loads_and_compiles_into_a_step_program(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("name\nann\nbob\n")
    sc = load_scenario(write(tmp_path, FLOW_YAML))
    shop_, browse = sc.flows
    assert (shop_.name, shop_.weight, shop_.cookies, browse.cookies) == ("shop", 3, True, False)
    assert browse.on_capture_fail == "skip"
    prog = shop_.program()
    assert [type(s).__name__ for s in prog] == [
        "Request", "Think", "Request", "Request", "Think", "Think", "Request"
    ]  # fmt: skip
    assert prog[1] == Think.constant(0.5)
    assert prog[4] == Think.uniform(0.1, 1.0) and prog[5] == Think.exponential(0.3)
    assert prog[0].captures == (
        Capture.json("token", "data.token"),
        Capture.header("where", "Location"),
        Capture.between("id", '"id":"', '"'),
    )
    cfg = compile_run(sc, duration="1s")
    assert [e.name for e in cfg.endpoints] == [
        "shop.login",
        "shop.item",
        "shop.order",
        "browse.GET /",
    ]
    assert cfg.variables == ("token", "where", "id")
    spec = cfg.flows[0]
    assert [st[0] for st in spec.steps] == [1, 2, 1, 1, 2, 2, 1]
    assert spec.steps[1] == (2, 0, 500_000_000, 0)
    assert spec.steps[4] == (2, 1, 100_000_000, 1_000_000_000)
    assert spec.feeds == 1  # the users feeder, drawn once per iteration
    assert [c[1] for c in spec.captures] == ["token", "where", "id"]
    # every request of a flow with cookies is a template (its Cookie line); the order step's
    # target is the captured Location
    assert all(e.template is not None for e in cfg.endpoints[:3])
    assert cfg.endpoints[3].template is None  # cookies off, no placeholder: sent as it is


BAD_FLOWS = [
    (
        "a variable nothing captures",
        """
        - get: /a
          headers: {Authorization: "Bearer {{ tokn }}"}
        """,
        "9:34: no step before this one captures {{ tokn }} (did you mean 'token'?)",
    ),
    (
        "a variable captured only later",
        """
        - get: /a?x={{ later }}
        - get: /b
          capture: {later: {header: X}}
        """,
        "8:14: no step before this one captures {{ later }}",
    ),
    ("think below zero", "- think: -5ms", "8:16: think must not be below zero"),
    ("think not a duration", "- think: soon", "8:16: bad think 'soon'"),
    (
        "uniform think reversed",
        "- think: {uniform: [2s, 1s]}",
        "8:16: think uniform: 1s is below 2s",
    ),
    (
        "repeat without a bound",
        """
        - repeat: forever
          steps: [{get: /a}]
        """,
        "8:17: repeat needs a bound: a count in 1..1000",
    ),
    ("repeat without steps", "- repeat: 3", "8:9: a repeat needs its steps"),
    (
        "a capture of an unknown kind",
        """
        - get: /a
          capture: {t: {jsn: token}}
        """,
        "9:23: unknown key 'jsn' in capture 't' (did you mean 'json'?)",
    ),
    (
        "a capture with two kinds",
        """
        - get: /a
          capture: {t: {json: token, header: X}}
        """,
        "9:22: a capture is one of header, json or between",
    ),
    (
        "a capture into a bad variable name",
        """
        - get: /a
          capture: {"to-ken": {json: token}}
        """,
        "9:18: a captured variable's name is letters, digits and _",
    ),
]


@pytest.mark.parametrize(("why", "step", "where"), BAD_FLOWS, ids=[b[0] for b in BAD_FLOWS])
def test_bad_flow_definitions_fail_at_file_line_col(
    tmp_path: Path, why: str, step: str, where: str
) -> None:
    head = """\
    target: http://127.0.0.1:1
    flows:
      - name: shop
        steps:
          - post: /login
            capture:
              token: {json: token}
    """
    body = textwrap.indent(textwrap.dedent(step).strip("\n"), "      ") + "\n"
    p = write(tmp_path, textwrap.dedent(head) + body)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    assert str(exc.value).startswith(f"{p}:{where}"), str(exc.value)


def test_a_bad_flow_is_one_line_and_exit_2_on_the_command_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
        target: http://127.0.0.1:1
        flows:
          - name: shop
            steps:
              - think: -1s
              - get: /
        """,
    )
    r = subprocess.run(
        [sys.executable, "-m", "barfast", "run", str(p), "-n", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == f"barfast: error: {p}:5:16: think must not be below zero"


def test_the_python_model_refuses_what_the_yaml_does() -> None:
    with pytest.raises(ScenarioError, match="no step before it captures"):
        Scenario(target="http://127.0.0.1:1", flows=(Flow("f", (Request("a", headers=AUTH),)),))
    with pytest.raises(ScenarioError, match="below zero"):
        Think.constant(-0.1)
    with pytest.raises(ScenarioError, match="1..1000"):
        Repeat(0, (Request("a"),))
    with pytest.raises(ScenarioError, match="requests or flows"):
        Scenario(
            requests=(Request("a"),),
            target="http://127.0.0.1:1",
            flows=(Flow("f", (Request("b"),)),),
        )
    with pytest.raises(ScenarioError, match="at least one request step"):
        Flow("f", (Think.constant(1),))
    with pytest.raises(ScenarioError, match="captures belong to flow steps"):
        Scenario(
            requests=(Request("a", captures=(Capture.json("t", "t"),)),),
            target="http://127.0.0.1:1",
        )
    with pytest.raises(ScenarioError, match="steps once repeats are unrolled"):
        Flow("f", (Repeat(1000, (Request("a"), Request("b"))),))


# ------------------------------------------------------------------ runs against the sessions target


def test_two_workers_run_the_flow_with_no_rejection_and_the_servers_counts() -> None:
    n = 3000
    with running(sessions=True) as srv:
        r = barfast.run(shop(f"http://127.0.0.1:{srv.port}"), connections=8, requests=n, workers=2)
        k = srv.counters()
    f = r.flows["shop"]
    assert (f.iterations, f.completed, f.failed, f.in_progress) == (n, n, 0, 0)
    assert k["rejected"] == 0
    steps = {name: e.completed for name, e in r.endpoints.items()}
    assert steps == {"shop.login": n, "shop.items": 2 * n, "shop.order": n}
    assert k["logins"] == steps["shop.login"]
    assert k["authorized"] == steps["shop.items"] + steps["shop.order"]
    assert r.completed == r.requests == 4 * n and r.errors == 0
    assert r.checks == {"passed": 4 * n, "failed": 0}
    assert f.captures[0]["ok"] == n and f.captures_failed == 0
    assert f.duration is not None and f.duration.count == n  # one duration per iteration
    assert f.steps == ["shop.login", "shop.items", "shop.items", "shop.order"]


@pytest.mark.load
def test_200k_iterations_across_two_workers_are_never_rejected() -> None:
    n = 200_000
    with running(sessions=True) as srv:
        r = barfast.run(shop(f"http://127.0.0.1:{srv.port}"), connections=64, requests=n, workers=2)
        k = srv.counters()
    f = r.flows["shop"]
    assert (f.completed, f.failed) == (n, 0)
    assert k["rejected"] == 0 and k["logins"] == n and k["authorized"] == 3 * n
    assert r.endpoints["shop.items"].completed == 2 * n


def test_a_failed_capture_restarts_or_skips_and_is_counted() -> None:
    # /login's JSON has no "missing" key: the capture fails on every iteration
    def sc(url: str, mode: str) -> Scenario:
        return Scenario(
            target=url,
            flows=(
                Flow(
                    "f",
                    (
                        Request(
                            "login",
                            "/login",
                            method="POST",
                            captures=(Capture.json("t", "missing"), Capture.json("u", "user")),
                        ),
                        Request("uses_t", "/a", headers={"X-T": "{{ t }}"}),
                        Request("uses_u", "/b", headers={"X-U": "{{ u }}"}),
                    ),
                    on_capture_fail=mode,
                ),
            ),
        )

    with running(sessions=True) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        restart = barfast.run(sc(url, "restart"), connections=2, requests=50)
        skip = barfast.run(sc(url, "skip"), connections=2, requests=50)
    for r in (restart, skip):
        f = r.flows["f"]
        assert (f.iterations, f.completed, f.failed) == (50, 0, 50)
        assert f.captures[0]["failed"] == 50 and f.captures[0]["reasons"] == {"missing": 50}
        assert f.captures[1]["ok"] == 50
    # restart: the iteration ends at the failed capture; skip: only the step needing `t` is skipped
    assert set(restart.endpoints) == {"f.login", "f.uses_t", "f.uses_u"}
    assert [restart.endpoints[n].completed for n in ("f.login", "f.uses_t", "f.uses_u")] == [
        50,
        0,
        0,
    ]
    assert [skip.endpoints[n].completed for n in ("f.login", "f.uses_t", "f.uses_u")] == [50, 0, 50]
    assert skip.flows["f"].raw["steps_skipped"] == 50


def test_open_loop_rate_is_iterations_per_second_and_bounds_iterations() -> None:
    with running(sessions=True) as srv:
        r = barfast.run(
            shop(f"http://127.0.0.1:{srv.port}", think=Think.constant(0.002)),
            connections=20,
            rate=400,
            requests=200,
        )
        k = srv.counters()
    f = r.flows["shop"]
    assert (f.iterations, f.completed, f.failed) == (200, 200, 0)
    assert k["rejected"] == 0 and r.completed == 800
    assert r.config["open_loop"] is True
    # every step's intended time is known, so the report has send lag and uncorrected latency
    assert r.raw["send_lag_ms"]["count"] == 800
    assert r.raw["latency_uncorrected_ms"]["count"] == 800


def test_iteration_duration_is_the_thinks_plus_the_steps_latencies() -> None:
    """Closed loop: step 2 is due at step 1's end plus the think, so an iteration lasts step 1's
    latency + the think + step 2's (corrected) latency, whatever the machine's timer lateness
    (it lands in step 2's corrected latency). Within 2 % of the mean."""
    think = 0.02
    flow = Flow("f", (Request("a", "/a"), Think.constant(think), Request("b", "/b")))
    with running() as srv:
        sc = Scenario(target=f"http://127.0.0.1:{srv.port}", flows=(flow,))
        r = barfast.run(sc, connections=4, requests=120)
    f = r.flows["f"]
    assert f.completed == 120
    a, b = r.endpoints["f.a"].latency, r.endpoints["f.b"].latency
    assert a is not None and b is not None and f.duration is not None
    assert a.mean is not None and b.mean is not None and f.duration.mean is not None
    expected = a.mean + think + b.mean
    assert f.duration.mean == pytest.approx(expected, rel=0.02)
    assert f.duration.min is not None and f.duration.min >= think


# ------------------------------------------------------------------ captures on split responses


@contextmanager
def script_server(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    with tcp_server(lambda conn, _stop: handler(conn), nodelay=True) as port:
        yield port


def read_request(conn: socket.socket, buf: bytearray) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One request: its target, headers (lower-cased names) and body (Content-Length)."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            raise OSError("eof")
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    lines = bytes(buf[: end - 4]).split(b"\r\n")
    del buf[:end]
    target = lines[0].split(b" ")[1]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get(b"content-length", b"0"))
    while len(buf) < n:
        data = conn.recv(65536)
        if not data:
            raise OSError("eof")
        buf += data
    body = bytes(buf[:n])
    del buf[:n]
    return target, headers, body


TOKEN = 'a"b\\c\u00e9 z'  # a JSON string with escapes, decoded by the capture
LOGIN_BODY = json.dumps({"data": {"token": TOKEN}, "html": '<a id="x7 y">'}).encode()
LOGIN = (
    b"HTTP/1.1 200 OK\r\nX-Token: hdr-tok-42\r\nSet-Cookie: sid=s1; Path=/\r\n"
    b"Set-Cookie: gone=1; Max-Age=0\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(LOGIN_BODY)
) + LOGIN_BODY


def test_captures_and_cookies_from_responses_split_at_every_byte() -> None:
    """Iteration i gets its login response in two writes split at byte i (every boundary of the
    head and the body); the next step must send back each captured value, escaped for where it
    goes (a header as it is, a request target percent-encoded, a JSON string escaped), and the
    cookie the login set (the one with Max-Age=0 deleted)."""
    seen: list[bool] = []
    lock = threading.Lock()
    split = iter(range(1, len(LOGIN)))

    def handler(conn: socket.socket) -> None:
        buf = bytearray()
        while True:
            target, headers, body = read_request(conn, buf)
            if target == b"/login":
                with lock:
                    i = next(split, len(LOGIN) // 2)
                conn.sendall(LOGIN[:i])
                threading.Event().wait(0.002)  # the client reads the first part on its own
                conn.sendall(LOGIN[i:])
                continue
            ok = (
                target == b"/use?m=x7%20y"
                and headers.get(b"x-header") == b"hdr-tok-42"
                and headers.get(b"x-json") == TOKEN.encode()
                and headers.get(b"cookie") == b"sid=s1"
                and json.loads(body) == {"t": TOKEN, "h": "hdr-tok-42"}
            )
            with lock:
                seen.append(ok)
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % (200 if ok else 403))

    n = len(LOGIN) - 1
    with script_server(handler) as port:
        sc = Scenario(
            target=f"http://127.0.0.1:{port}",
            flows=(
                Flow(
                    "f",
                    (
                        Request(
                            "login",
                            "/login",
                            captures=(
                                Capture.header("h", "x-token"),
                                Capture.json("j", "data.token"),
                                Capture.between("m", 'id=\\"', '\\"'),
                            ),
                        ),
                        Request(
                            "use",
                            "/use?m={{ m }}",
                            method="POST",
                            headers={"X-Header": "{{ h }}", "X-Json": "{{ j }}"},
                            json={"t": "{{ j }}", "h": "{{ h }}"},
                            checks=OK200,
                        ),
                    ),
                ),
            ),
        )
        r = barfast.run(sc, connections=1, requests=n)
    f = r.flows["f"]
    assert (f.completed, f.failed, f.captures_failed) == (n, 0, 0), f.raw
    assert len(seen) == n and all(seen)


def test_the_cookie_jar_starts_empty_each_iteration_and_can_be_off() -> None:
    cookies: list[bytes | None] = []

    def handler(conn: socket.socket) -> None:
        buf = bytearray()
        while True:
            target, headers, _ = read_request(conn, buf)
            cookies.append(headers.get(b"cookie"))
            extra = b"Set-Cookie: n=%d\r\n" % len(cookies) if target == b"/set" else b""
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: 0\r\n\r\n")

    steps = (Request("first", "/first"), Request("set", "/set"), Request("after", "/after"))
    with script_server(handler) as port:
        url = f"http://127.0.0.1:{port}"
        barfast.run(Scenario(target=url, flows=(Flow("f", steps),)), connections=1, requests=3)
        on = list(cookies)
        cookies.clear()
        barfast.run(
            Scenario(target=url, flows=(Flow("f", steps, cookies=False),)),
            connections=1,
            requests=2,
        )
    # per iteration: nothing, nothing, then the cookie /set gave in that iteration
    assert on == [None, None, b"n=2", None, None, b"n=5", None, None, b"n=8"]
    assert cookies == [None] * 6


def test_a_feeder_row_is_drawn_once_per_iteration(tmp_path: Path) -> None:
    users = [f"user{i}" for i in range(40)]
    (tmp_path / "users.csv").write_text("name\n" + "\n".join(users) + "\n")
    pairs: list[tuple[bytes, bytes]] = []
    lock = threading.Lock()

    def handler(conn: socket.socket) -> None:
        buf = bytearray()
        first = b""
        while True:
            target, _, _ = read_request(conn, buf)
            if target.startswith(b"/a/"):
                first = target[3:]
            else:
                with lock:
                    pairs.append((first, target[3:]))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with script_server(handler) as port:
        p = write(
            tmp_path,
            f"""
            target: http://127.0.0.1:{port}
            data:
              users: {{csv: users.csv, order: unique}}
            flows:
              - name: f
                steps:
                  - get: /a/{{{{ users.name }}}}
                  - get: /b/{{{{ users.name }}}}
            """,
        )
        r = barfast.run(str(p), connections=4, duration="30s", workers=2)
    assert r.flows["f"].completed == len(users)  # a unique feeder: one iteration per row
    assert all(a == b for a, b in pairs) and len(pairs) == len(users)
    assert sorted(a.decode() for a, _ in pairs) == sorted(users)
    assert r.data_exhausted == ["users"]


def test_the_example_flow_runs_against_serve_sessions_and_prints_its_tables(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parent.parent / "examples" / "flow"
    with running(sessions=True) as srv:
        text = (root / "shop.yaml").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{srv.port}")
        (tmp_path / "shop.yaml").write_text(text)
        (tmp_path / "users.csv").write_text((root / "users.csv").read_text())
        r = subprocess.run(
            [sys.executable, "-m", "barfast", "run", str(tmp_path / "shop.yaml"), "-n", "40"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        k = srv.counters()
    assert r.returncode == 0, r.stderr
    assert k["rejected"] == 0 and k["logins"] == 40 and k["authorized"] == 120
    assert "virtual users (one per connection)" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("shop "))
    name, weight, iterations, _rate, failed, running_, *_ = row.split()
    assert (weight, iterations, failed, running_) == ("1", "40", "0", "0")
    assert "Checks: 160 passed, 0 failed" in r.stdout  # per response: every check passed
