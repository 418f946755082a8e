"""Request data: feeders and generators rendered by the engine, checked at the server.

nginx's access log shows the paths in the order they arrived (one connection per worker: a worker's
requests arrive in the order it sent them); a capture server built on h11 (a real socket, a strict
HTTP/1.1 parser) shows whole requests: headers, bodies and their Content-Length.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import pytest

from barfast.scenario.compile import compile_run, load_options
from barfast.scenario.load import load_scenario
from barfast.scenario.model import ScenarioError

LINE = re.compile(rb'"(GET|POST|PUT) (\S+) HTTP/1\.1"')


def barfast(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barfast", *args], capture_output=True, text=True, timeout=timeout
    )


def logged_paths(nginx) -> list[str]:
    return [m.group(2).decode() for m in LINE.finditer((nginx.run_dir / "access.log").read_bytes())]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def run_json(*args: str) -> dict:
    out = barfast("run", *args, "--json", "-q")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sequential_rows_arrive_in_order_per_disjoint_range(nginx, tmp_path: Path) -> None:
    # 1000 rows, 2 workers of one connection each, 3000 requests: worker 0 owns rows 0..499 and
    # worker 1 rows 500..999; each sends its rows in order, wrapping, three times over.
    write_csv(tmp_path / "ids.csv", "id", [str(i) for i in range(1000)])
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {nginx.url}\ndata:\n  ids: {{csv: ids.csv}}\n"
        "requests:\n  - {name: item, get: '/item/{{ ids.id }}'}\n"
    )
    nginx.truncate_log()
    rep = run_json(str(sc), "-w", "2", "-c", "2", "-n", "3000")
    assert rep["requests"]["completed"] == 3000 and rep["requests"]["errors"] == 0
    assert nginx.wait_logged(3000) == 3000
    ids = [int(p.rsplit("/", 1)[1]) for p in logged_paths(nginx)]
    low = [i for i in ids if i < 500]
    high = [i for i in ids if i >= 500]
    assert low == [i % 500 for i in range(1500)]
    assert high == [500 + i % 500 for i in range(1500)]


def test_sequential_rows_over_many_connections_are_used_evenly(nginx, tmp_path: Path) -> None:
    write_csv(tmp_path / "ids.csv", "id", [str(i) for i in range(100)])
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {nginx.url}\ndata:\n  ids: {{csv: ids.csv, order: sequential}}\n"
        "requests:\n  - {name: item, get: '/item/{{ ids.id }}'}\n"
    )
    nginx.truncate_log()
    rep = run_json(str(sc), "-w", "2", "-c", "20", "-n", "3000")
    assert rep["requests"]["completed"] == 3000
    assert nginx.wait_logged(3000) == 3000
    counts = Counter(p.rsplit("/", 1)[1] for p in logged_paths(nginx))
    assert counts == {str(i): 30 for i in range(100)}


def test_unique_rows_are_each_used_once_then_the_run_stops(nginx, tmp_path: Path) -> None:
    write_csv(tmp_path / "ids.csv", "id", [str(i) for i in range(301)])
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {nginx.url}\nload: {{duration: 30s}}\n"
        "data:\n  ids: {csv: ids.csv, order: unique}\n"
        "requests:\n  - {name: item, get: '/item/{{ ids.id }}'}\n"
    )
    nginx.truncate_log()
    rep = run_json(str(sc), "-w", "2", "-c", "8")
    assert rep["data_exhausted"] == ["ids"]
    assert rep["config"]["data"] == [{"name": "ids", "order": "unique", "rows": 301}]
    assert rep["requests"]["started"] == rep["requests"]["completed"] == 301
    assert rep["duration_s"] < 30  # stopped by the data, not the clock
    assert nginx.wait_logged(301) == 301
    assert sorted(int(p.rsplit("/", 1)[1]) for p in logged_paths(nginx)) == list(range(301))
    text = barfast("run", str(sc), "-w", "1", "-c", "2")
    assert text.returncode == 0 and "(stopped: unique rows of ids used up)" in text.stdout


def test_unique_rows_in_open_loop_stop_the_schedule(nginx, tmp_path: Path) -> None:
    write_csv(tmp_path / "ids.csv", "id", [str(i) for i in range(50)])
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {nginx.url}\nload: {{duration: 30s, rate: 500}}\n"
        "data:\n  ids: {csv: ids.csv, order: unique}\n"
        "requests:\n  - {name: item, get: '/item/{{ ids.id }}'}\n"
    )
    rep = run_json(str(sc), "-w", "2", "-c", "4")
    r = rep["requests"]
    assert rep["data_exhausted"] == ["ids"]
    assert r["started"] == 50 and r["completed"] + r["errors"] + r["in_flight"] == 50


def test_random_rows_are_the_files_and_reproducible_with_a_seed(nginx, tmp_path: Path) -> None:
    write_csv(tmp_path / "ids.csv", "id", [str(i) for i in range(10)])
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {nginx.url}\nseed: 7\ndata:\n  ids: {{csv: ids.csv, order: random}}\n"
        "requests:\n  - {name: item, get: '/item/{{ ids.id }}?r={{ rand 5 9 }}'}\n"
    )
    seen = []
    for _ in range(2):
        nginx.truncate_log()
        run_json(str(sc), "-w", "1", "-c", "1", "-n", "400")
        assert nginx.wait_logged(400) == 400
        seen.append(logged_paths(nginx))
    assert seen[0] == seen[1]  # one connection, one seed: the same rows and numbers in order
    ids = Counter(urlsplit(p).path.rsplit("/", 1)[1] for p in seen[0])
    assert set(ids) == {str(i) for i in range(10)}  # 400 draws of 10: each shows (p_miss < 1e-17)
    rs = {int(parse_qs(urlsplit(p).query)["r"][0]) for p in seen[0]}
    assert rs == {5, 6, 7, 8, 9}


class Capture:
    """An HTTP/1.1 server on a real socket that keeps every request (h11 parses and frames them)."""

    def __init__(self, respond: Any = None) -> None:
        # respond(k) -> (headers, body) for the k-th request (default: 200 "ok")
        self.respond = respond or (lambda k: ([], b"ok"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        req, body = None, b""
        with c:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = c.recv(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(ev, h11.Request):
                    req, body = ev, b""
                elif isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    assert req is not None
                    hdrs = {k.decode(): v.decode("utf-8") for k, v in req.headers}
                    with self.lock:
                        self.requests.append((req.method.decode(), req.target.decode(), hdrs, body))
                    with self.lock:
                        extra, payload = self.respond(len(self.requests) - 1)
                    hs = [("Content-Length", str(len(payload))), *extra]
                    resp = h11.Response(status_code=200, headers=hs)
                    c.sendall(conn.send(resp) + conn.send(h11.Data(data=payload)))
                    c.sendall(conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                elif isinstance(ev, h11.ConnectionClosed):
                    return

    def close(self) -> None:
        # shutdown() wakes the accept() blocked in the other thread (close() alone does not, and
        # that thread could then accept on the next server's socket once it reused the fd number)
        self.stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        self.sock.close()


@pytest.fixture
def capture():
    cap = Capture()
    yield cap
    cap.close()


NAMES = ['Zoë "Z" Smith', "a\\b", "tab\there", "x/y&w=1#f", "plain"]


def test_values_are_escaped_for_where_they_land(capture: Capture, tmp_path: Path) -> None:
    # CSV values with quotes, a backslash, a tab, unicode and URL delimiters arrive intact: the
    # path percent-encoded, the JSON body escaped (and parsing), the header as it is, and each
    # request's Content-Length matching its rendered body.
    rows = []
    for i, n in enumerate(NAMES):
        q = n.replace('"', '""')
        rows.append(f'{i},"{q}"')
    write_csv(tmp_path / "users.csv", "id,name", rows)
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {capture.url}\n"
        "data:\n  users: {csv: users.csv}\n"
        "requests:\n"
        "  - name: order\n"
        "    post: '/orders/{{ users.name }}?id={{ users.id }}'\n"
        "    headers: {X-Id: 'u-{{ users.id }}'}\n"
        "    json: {id: '{{ users.id }}', name: '{{ users.name }}', n: '{{ seq }}',"
        " tag: 'x{{ hex 4 }}'}\n"
    )
    rep = run_json(str(sc), "-w", "1", "-c", "1", "-n", "10")
    assert rep["requests"]["completed"] == 10 and rep["requests"]["errors"] == 0
    assert len(capture.requests) == 10
    for k, (method, target, hdrs, body) in enumerate(capture.requests):
        i = k % len(NAMES)
        assert method == "POST"
        path, _, query = target.partition("?")
        assert unquote(path) == f"/orders/{NAMES[i]}" and query == f"id={i}"
        assert hdrs["x-id"] == f"u-{i}"
        assert hdrs["content-type"] == "application/json"
        assert int(hdrs["content-length"]) == len(body)
        doc = json.loads(body)
        assert doc["id"] == str(i) and doc["name"] == NAMES[i]
        assert doc["n"] == k  # a string that is one numeric generator becomes a number
        assert re.fullmatch(r"x[0-9a-f]{4}", doc["tag"])


def test_generators_across_workers(capture: Capture, tmp_path: Path) -> None:
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {capture.url}\n"
        "requests:\n"
        "  - name: g\n"
        "    get: '/g?seq={{ seq }}&r={{ rand 10 20 }}&u={{ uuid }}&a={{ alnum 12 }}"
        "&t={{ time }}&ms={{ time_ms }}'\n"
    )
    t0 = time.time()
    rep = run_json(str(sc), "-w", "2", "-c", "4", "-n", "600")
    t1 = time.time()
    assert rep["requests"]["completed"] == 600
    qs = [parse_qs(urlsplit(t).query) for _, t, _, _ in capture.requests]
    assert len(qs) == 600
    # seq: worker i takes i, i + 2, ...; with equal shares the union is exactly 0..599
    assert sorted(int(q["seq"][0]) for q in qs) == list(range(600))
    assert all(10 <= int(q["r"][0]) <= 20 for q in qs)
    v4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(v4.fullmatch(q["u"][0]) for q in qs)
    assert len({q["u"][0] for q in qs}) == 600
    assert all(re.fullmatch(r"[0-9A-Za-z]{12}", q["a"][0]) for q in qs)
    assert all(int(t0) <= int(q["t"][0]) <= int(t1) + 1 for q in qs)
    assert all(int(t0 * 1000) - 1 <= int(q["ms"][0]) <= int(t1 * 1000) + 1 for q in qs)


def test_a_python_scenario_with_computed_rows(capture: Capture, tmp_path: Path) -> None:
    p = tmp_path / "s.py"
    p.write_text(
        "import barfast\n"
        "users = barfast.feeders.rows([{'id': i * i} for i in range(5)])\n"
        "scenario = barfast.Scenario(\n"
        f"    target={capture.url!r},\n"
        "    data={'users': users},\n"
        "    requests=[barfast.Request('sq', path='/sq/{{ users.id }}')],\n"
        ")\n"
    )
    rep = run_json(str(p), "-w", "1", "-c", "1", "-n", "5")
    assert rep["requests"]["completed"] == 5
    assert [t for _, t, _, _ in capture.requests] == [f"/sq/{i * i}" for i in range(5)]


BAD_DATA = [
    # (scenario lines after target, csv text or None, where, message)
    (
        "data:\n  users: {csv: u.csv}\nrequests:\n  - {name: a, get: '/i/{{ users.idx }}'}\n",
        "id,name\n1,a\n",
        "5:20",
        "no column 'idx' in u.csv (columns: id, name) (did you mean 'id'?)",
    ),
    ("data:\n  users: {csv: u.csv}\n", "", "3:16", "u.csv: empty"),
    ("data:\n  users: {csv: u.csv}\n", "id,name\n", "3:16", "u.csv: no rows below the header"),
    ("data:\n  users: {csv: u.csv}\n", "id,name\n1,a\n2\n", "3:16", "u.csv:3: 1 fields"),
    (
        "data:\n  users: {csv: u.csv, order: shuffled}\n",
        "id\n1\n",
        "3:30",
        "order must be one of sequential, random, unique",
    ),
    (
        "requests:\n  - {name: a, get: '/i/{{ rnd 1 2 }}'}\n",
        None,
        "3:20",
        "bad placeholder {{ rnd 1 2 }} (did you mean 'rand'?)",
    ),
    (
        "requests:\n  - {name: a, get: '/i/{{ rand 9 2 }}'}\n",
        None,
        "3:20",
        "{{ rand 9 2 }}: 2 is below 9",
    ),
    ("requests:\n  - {name: a, get: '/i/{{ hex 0 }}'}\n", None, "3:20", "hex's length must be"),
    ("requests:\n  - {name: a, get: '/i/{{ seq'}\n", None, "3:20", "unbalanced {{ }}"),
    (
        "requests:\n  - {name: a, post: /o, json: {u: '{{ user.id }}'}}\n",
        None,
        "3:35",
        "no data named 'user'",
    ),
    (
        "requests:\n  - {name: a, headers: {X-A: '{{ uuid 4 }}'}}\n",
        None,
        "3:30",
        "{{ uuid }} takes no arguments",
    ),
    ("data:\n  9users: {csv: u.csv}\n", "id\n1\n", "3:3", "9users"),
]


@pytest.mark.parametrize(
    ("lines", "csv", "where", "message"), BAD_DATA, ids=[m[:40] for *_, m in BAD_DATA]
)
def test_bad_data_is_one_line_at_file_line_col(
    tmp_path: Path, lines: str, csv: str | None, where: str, message: str
) -> None:
    if csv is not None:
        (tmp_path / "u.csv").write_text(csv)
    p = tmp_path / "s.yaml"
    p.write_text("target: http://127.0.0.1:9/\n" + lines)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}:{where}: "), msg
    assert message in msg, msg


def test_a_header_value_with_a_line_break_is_refused(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text('id\n"a\nb"\n')
    p = tmp_path / "s.yaml"
    p.write_text(
        "target: http://127.0.0.1:9/\ndata:\n  users: {csv: u.csv}\n"
        "requests:\n  - {name: a, headers: {X-U: '{{ users.id }}'}}\n"
    )
    sc = load_scenario(p)
    with pytest.raises(ScenarioError, match=r"u.csv:2, column 'id': a value with CR, LF or NUL"):
        compile_run(sc, **load_options(sc, {}))


def test_more_workers_than_unique_rows_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("id\n1\n")
    p = tmp_path / "s.yaml"
    p.write_text(
        "target: http://127.0.0.1:9/\ndata:\n  users: {csv: u.csv, order: unique}\n"
        "requests:\n  - {name: a, get: '/u/{{ users.id }}'}\n"
    )
    out = barfast("run", str(p), "-w", "2", "-c", "2")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith("barfast: error: data 'users': 1 rows for 2 workers")


def test_tag_flags_join_the_scenarios_tags_and_headers(capture: Capture, tmp_path: Path) -> None:
    sc = tmp_path / "s.yaml"
    sc.write_text(
        f"target: {capture.url}\ntags: {{env: file, team: a}}\ntag_header: X-Load-\n"
        "requests:\n  - {name: a, path: /t}\n"
    )
    rep = run_json(str(sc), "-w", "1", "-c", "1", "-n", "3", "--tag", "env=ci", "--seed", "4")
    assert rep["config"]["tags"] == {"env": "ci", "team": "a"}  # the flag wins
    assert len(capture.requests) == 3
    for _, _, hdrs, _ in capture.requests:
        assert hdrs["x-load-env"] == "ci" and hdrs["x-load-team"] == "a"
    bad = barfast("run", str(sc), "--tag", "nokey")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "barfast: error: bad --tag 'nokey': expected KEY=VALUE"
    )


def test_header_body_and_json_checks_count_each_failure() -> None:
    # Every 10th response has the wrong JSON and no X-Ok header; every response is 40+ bytes, so
    # with max_body_for_checks 16 a body check for text past byte 16 fails as "body too long".
    good = b'{"data": {"items": [{"id": 7, "name": "a\\u00e9"}]}, "pad": "xxxxxxxx"}'
    bad = b'{"data": {"items": []}, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'

    def respond(k: int) -> tuple[list[tuple[str, str]], bytes]:
        if k % 10 == 9:
            return [("Content-Type", "application/json")], bad
        return [("Content-Type", "application/json"), ("X-Ok", "yes")], good

    cap = Capture(respond)
    try:

        def run(max_body: int) -> dict:
            sc = barfast_scenario(cap.url, max_body)
            return barfast_api_run(sc)

        rep = run(65536)
        e = rep["endpoints"]["j"]
        each = {c["name"]: (c["failed"], c["body_too_long"]) for c in e["checks"]["each"]}
        assert rep["requests"]["completed"] == 200 and rep["requests"]["errors"] == 0
        assert each == {
            "status 2xx": (0, 0),
            "header Content-Type == 'application/json'": (0, 0),
            "header X-Ok == 'yes'": (20, 0),
            "body contains 'items'": (0, 0),
            "json data.items.0.id == 7": (20, 0),
            "json data.items.0.name == 'a\u00e9'": (20, 0),
            "json data.missing absent": (0, 0),
        }
        assert e["checks"]["failed"] == 20 and e["checks"]["passed"] == 180
        assert e["latency_ms"]["count"] == 200  # failed checks stay completed responses
        short = run(16)["endpoints"]["j"]["checks"]["each"]
        by = {c["name"]: (c["failed"], c["body_too_long"]) for c in short}
        assert by["body contains 'items'"] == (0, 0)  # within the first 16 bytes
        assert by["json data.items.0.id == 7"] == (200, 200)  # the path runs past byte 16
        assert by["header X-Ok == 'yes'"] == (20, 0)  # headers are kept whole
    finally:
        cap.close()


def barfast_scenario(url: str, max_body: int) -> Any:
    import barfast

    C = barfast.Check
    return barfast.Scenario(
        target=url,
        max_body_for_checks=max_body,
        requests=[
            barfast.Request(
                "j",
                path="/j",
                checks=(
                    C.status_in("2xx"),
                    C.header("Content-Type", equals="application/json"),
                    C.header("X-Ok", equals="yes"),
                    C.body_contains("items"),
                    C.json("data.items.0.id", equals=7),
                    C.json("data.items.0.name", equals="a\u00e9"),
                    C.json("data.missing", exists=False),
                ),
            )
        ],
    )


def barfast_api_run(sc: Any) -> dict:
    import barfast

    return barfast.run(sc, requests=200, connections=1, workers=1).raw
