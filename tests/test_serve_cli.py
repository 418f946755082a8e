"""`barfast serve` as a user runs it: a real process, its listening line, signals and exit codes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess

import pytest

from conftest import barfast_cmd

LISTEN_RE = re.compile(r"^barfast serve: listening on http://(\[[0-9a-f:]+\]|[0-9.]+):(\d+)/$")


def start(*args: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        barfast_cmd("serve", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    m = LISTEN_RE.match(line)
    if not m:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"first stdout line {line!r} is not the listening line; stderr: {err}")
    return proc, m.group(1).strip("[]"), int(m.group(2))


def request(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_listening_line_then_signal_exits_0(sig: signal.Signals) -> None:
    proc, host, port = start("--addr", "127.0.0.1:0")
    try:
        assert host == "127.0.0.1" and port > 0
        data = request(host, port)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"hello world\n")
        proc.send_signal(sig)
        assert proc.wait(5) == 0  # exits on the signal; 5 s: a hang guard
        _, err = proc.communicate(timeout=5)
        assert "Traceback" not in err
    finally:
        proc.kill()
        proc.wait(5)


def test_duration_and_options() -> None:
    proc, host, port = start(
        "--addr", "[::1]:0" if socket.has_ipv6 else "127.0.0.1:0", "-d", "1s",
        "--body-size", "3", "--status-mix", "404", "--delay", "1ms", "--delay-dist", "exp:1ms",
        "--stall", "10ms/1s", "--close-every", "2",
    )  # fmt: skip
    try:
        data = request(host, port)
        assert data.startswith(b"HTTP/1.1 404 Not Found\r\n") and data.endswith(b"\r\n\r\nhel")
        assert proc.wait(5) == 0  # -d 1s: exits by itself
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--addr", "127.0.0.1"], "--addr"),
        (["--addr", "127.0.0.1:70000"], "--addr"),
        (["--addr", "::1:80"], "brackets"),
        (["--addr", "no.such.host.invalid:0"], "resolve"),
        (["--addr", "127.0.0.1:0", "-d", "ten"], "duration"),
        (["--addr", "127.0.0.1:0", "--delay", "2 parsecs"], "--delay"),
        (["--addr", "127.0.0.1:0", "--delay-dist", "uniform:3ms-1ms"], "--delay-dist"),
        (["--addr", "127.0.0.1:0", "--delay-dist", "gauss:1ms"], "--delay-dist"),
        (["--addr", "127.0.0.1:0", "--stall", "2s/1s"], "--stall"),
        (["--addr", "127.0.0.1:0", "--stall", "500ms"], "--stall"),
        (["--addr", "127.0.0.1:0", "--status-mix", "200:95,oops"], "--status-mix"),
        (["--addr", "127.0.0.1:0", "--status-mix", "200:1,200:2"], "--status-mix"),
        (["--addr", "127.0.0.1:0", "--status-mix", "99:1"], "--status-mix"),
        (["--addr", "127.0.0.1:0", "--close-every", "-1"], "--close-every"),
        (["--addr", "127.0.0.1:0", "--body-size", "-5"], "--body-size"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], needle: str) -> None:
    r = subprocess.run(barfast_cmd("serve", *args), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("barfast: error:"), r.stderr
    assert needle in lines[0]


def test_port_in_use_exits_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            barfast_cmd("serve", "--addr", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0] and "in use" in lines[0], r.stderr
