"""https in the native loop and unix sockets, against a real nginx (Debian's, with its ssl module).

Certificates are made here (the `cryptography` package): a test CA, a server certificate for
localhost and 127.0.0.1 signed by it, an expired one, and a client certificate for mTLS. nginx
serves four ways: https with session tickets (and few requests per connection, so reconnects
resume), https with the expired certificate, https requiring a client certificate, and plain HTTP
on a unix socket. Hostile TLS peers are small socket servers in this process. Every run is a real
`barfast run` process; counts are checked against nginx's access log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from barfast.engine._core import f16_ns, f16_us
from conftest import NGINX, barfast_cmd, free_port, wait_port

KEEPALIVE_REQUESTS = 50  # nginx closes each connection after this many: reconnects resume


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    client: bool = False,
    expired: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=2),
        )
    )
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        if not client:
            import ipaddress

            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(d: Path) -> dict[str, Path]:
    """CA, server (valid and expired), client: PEM files in d."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("barfast test CA", ca_key, None, ca_key, ca=True)
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, kw in (("server", {}), ("expired", {"expired": True}), ("client", {"client": True})):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"barfast {name}", key, ca, ca_key, **kw)
        out[name] = d / f"{name}.pem"
        out[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"] = d / f"{name}.key"
        _write_key(key, out[f"{name}_key"])
    return out


NGINX_TLS_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 4096; use epoll; }}
http {{
  access_log {run}/access.log;
  client_body_temp_path {run}/body;
  proxy_temp_path {run}/proxy;
  fastcgi_temp_path {run}/fastcgi;
  uwsgi_temp_path {run}/uwsgi;
  scgi_temp_path {run}/scgi;
  keepalive_requests {keepalive};
  ssl_session_tickets on;
  server {{
    listen 127.0.0.1:{https} ssl;
    ssl_certificate {server}; ssl_certificate_key {server_key};
    location / {{ return 200 "hello tls\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{expired} ssl;
    ssl_certificate {expired_cert}; ssl_certificate_key {expired_key};
    location / {{ return 200 "expired\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{mtls} ssl;
    ssl_certificate {server}; ssl_certificate_key {server_key};
    ssl_client_certificate {ca}; ssl_verify_client on;
    location / {{ return 200 "mtls\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{plain};
    listen unix:{run}/nginx.sock;
    location / {{ return 200 "plain\\n"; }}
  }}
}}
"""


class TlsNginx:
    def __init__(self, run: Path, pki: dict[str, Path], ports: dict[str, int]):
        self.run = run
        self.pki = pki
        self.ports = ports
        self.sock = run / "nginx.sock"

    def url(self, which: str, host: str = "127.0.0.1") -> str:
        scheme = "http" if which == "plain" else "https"
        return f"{scheme}://{host}:{self.ports[which]}/"

    def logged(self) -> int:
        log = self.run / "access.log"
        return sum(1 for _ in open(log, "rb")) if log.exists() else 0

    def wait_logged(self, n: int, timeout_s: float = 5.0) -> int:
        deadline = time.monotonic() + timeout_s
        got = self.logged()
        while got < n and time.monotonic() < deadline:
            time.sleep(0.02)
            got = self.logged()
        return got


@pytest.fixture(scope="module")
def tls_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNginx]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    run = tmp_path_factory.mktemp("nginx-tls")
    pki = make_pki(run)
    ports = {k: free_port() for k in ("https", "expired", "mtls", "plain")}
    (run / "nginx.conf").write_text(
        NGINX_TLS_CONF.format(
            run=run,
            keepalive=KEEPALIVE_REQUESTS,
            server=pki["server"],
            server_key=pki["server_key"],
            expired_cert=pki["expired"],
            expired_key=pki["expired_key"],
            ca=pki["ca"],
            **ports,
        )
    )
    proc = subprocess.Popen(
        [NGINX, "-c", str(run / "nginx.conf"), "-p", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for p in ports.values():
            wait_port(p)
    except TimeoutError:
        proc.kill()
        pytest.fail(f"nginx did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
    yield TlsNginx(run, pki, ports)
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_json(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], dict]:
    p = subprocess.run(
        barfast_cmd("run", *args, "--json", "-q"), capture_output=True, text=True, timeout=timeout
    )
    return p, (json.loads(p.stdout) if p.stdout.strip() else {})


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert p.returncode == code, (p.returncode, p.stdout[-500:], p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in p.stderr
    return lines[0]


def accounted(rep: dict) -> None:
    req = rep["requests"]
    assert req["started"] == req["completed"] + req["errors"] - req["not_sent"] + req["in_flight"]


# ---- against nginx -----------------------------------------------------------------------------


def test_https_counts_equal_the_access_log_and_reconnects_resume(tls_nginx: TlsNginx) -> None:
    before = tls_nginx.logged()
    n = 3000
    p, rep = run_json(
        tls_nginx.url("https"),
        "-n",
        str(n),
        "-c",
        "8",
        "-w",
        "2",
        "--cacert",
        str(tls_nginx.pki["ca"]),
    )
    assert p.returncode == 0, p.stderr
    assert rep["requests"]["completed"] == n and rep["requests"]["errors"] == 0
    assert rep["status"] == {"200": n}
    assert tls_nginx.wait_logged(before + n) - before == n
    tls = rep["tls"]
    # nginx ends every connection after KEEPALIVE_REQUESTS: at least n / that many connections,
    # each one handshake; every one after a slot's first resumes that slot's session
    # the handshake time rides on each connection's first request: all of them completed here
    assert tls["handshakes"] - 8 <= rep["tls_ms"]["count"] <= tls["handshakes"]
    assert tls["handshakes"] >= n // KEEPALIVE_REQUESTS
    assert tls["resumed"] >= tls["handshakes"] - 8 - 2  # slots' first handshakes are full
    assert tls["failure"] == ""
    assert rep["config"]["tls"]["verify"] is True
    assert 0 < rep["tls_ms"]["p50"] <= rep["tls_ms"]["max"]


def test_no_tls_resume_makes_every_handshake_full(tls_nginx: TlsNginx) -> None:
    p, rep = run_json(
        tls_nginx.url("https", "localhost"),
        "-n", "500", "-c", "4", "-w", "1", "--no-tls-resume", "--cacert", str(tls_nginx.pki["ca"]),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert rep["requests"]["completed"] == 500
    assert rep["tls"]["handshakes"] >= 500 // KEEPALIVE_REQUESTS
    assert rep["tls"]["resumed"] == 0


def test_open_loop_over_https(tls_nginx: TlsNginx) -> None:
    p, rep = run_json(tls_nginx.url("https"), "-R", "400", "-n", "200", "-c", "4", "-w", "1", "-k")
    assert p.returncode == 0, p.stderr
    assert rep["requests"]["completed"] == 200
    accounted(rep)


def test_verification_is_on_by_default(tls_nginx: TlsNginx) -> None:
    p, _ = run_json(tls_nginx.url("https"), "-d", "1s", "-c", "2", "-w", "1")
    one_line_error(p, 3, "no load could be generated", "certificate verify failed")


def test_insecure_skips_verification(tls_nginx: TlsNginx) -> None:
    p, rep = run_json(tls_nginx.url("https"), "-n", "100", "-c", "2", "-w", "1", "-k")
    assert p.returncode == 0, p.stderr
    assert rep["requests"]["completed"] == 100
    assert rep["config"]["tls"]["verify"] is False


def test_name_mismatch_is_classified(tls_nginx: TlsNginx) -> None:
    p, rep = run_json(
        tls_nginx.url("https"), "-d", "1s", "-c", "2", "-w", "1",
        "--cacert", str(tls_nginx.pki["ca"]), "--servername", "not-this-host.example",
    )  # fmt: skip
    one_line_error(p, 3, "hostname mismatch")


def test_expired_certificate_is_classified(tls_nginx: TlsNginx) -> None:
    p, _ = run_json(
        tls_nginx.url("expired"),
        "-d",
        "1s",
        "-c",
        "2",
        "-w",
        "1",
        "--cacert",
        str(tls_nginx.pki["ca"]),
    )
    one_line_error(p, 3, "certificate has expired")


def test_mtls_needs_the_client_certificate(tls_nginx: TlsNginx) -> None:
    ca = str(tls_nginx.pki["ca"])
    # without one, nginx finishes the handshake and answers 400 (No required SSL certificate)
    p, rep = run_json(tls_nginx.url("mtls"), "-n", "20", "-c", "1", "-w", "1", "--cacert", ca)
    assert p.returncode == 0, p.stderr
    assert rep["status"] == {"400": 20}
    p, rep = run_json(
        tls_nginx.url("mtls"), "-n", "200", "-c", "2", "-w", "1", "--cacert", ca,
        "--cert", str(tls_nginx.pki["client"]), "--key", str(tls_nginx.pki["client_key"]),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert rep["status"] == {"200": 200}
    assert rep["config"]["tls"]["client_cert"] is True


def test_a_key_that_is_not_the_certificates_is_one_line(tls_nginx: TlsNginx) -> None:
    p, _ = run_json(
        tls_nginx.url("mtls"), "-n", "1", "-k",
        "--cert", str(tls_nginx.pki["client"]), "--key", str(tls_nginx.pki["server_key"]),
    )  # fmt: skip
    assert p.returncode in (2, 3), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_plain_http_server_on_an_https_url(tls_nginx: TlsNginx) -> None:
    url = f"https://127.0.0.1:{tls_nginx.ports['plain']}/"
    t0 = time.monotonic()
    p, _ = run_json(url, "-d", "1s", "-c", "2", "-w", "1", "-k")
    one_line_error(p, 3, "no load could be generated", "x")
    assert time.monotonic() - t0 < 20


def test_unix_socket_counts_equal_the_access_log(tls_nginx: TlsNginx) -> None:
    before = tls_nginx.logged()
    p, rep = run_json(
        "http://localhost/",
        "--unix-socket",
        str(tls_nginx.sock),
        "-n",
        "2000",
        "-c",
        "4",
        "-w",
        "2",
    )
    assert p.returncode == 0, p.stderr
    assert rep["status"] == {"200": 2000}
    assert rep["config"]["target"]["unix_socket"] == str(tls_nginx.sock)
    assert tls_nginx.wait_logged(before + 2000) - before == 2000


def test_unix_socket_nobody_listens(tmp_path: Path) -> None:
    p, _ = run_json(
        "http://localhost/", "--unix-socket", str(tmp_path / "none.sock"), "-d", "1s", "-w", "1"
    )
    one_line_error(p, 3, "none.sock")


# ---- hostile TLS peers -------------------------------------------------------------------------


class Hostile:
    """A listener that treats every connection with `behave(conn)`, on a thread, until closed."""

    def __init__(self, behave):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.behave = behave
        self.held: list[socket.socket] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(conn)
            with contextlib.suppress(OSError):
                self.behave(conn)

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        for c in self.held:
            c.close()
        self.sock.close()


def _garbage(conn: socket.socket) -> None:
    conn.settimeout(1)
    conn.recv(4096)
    conn.sendall(b"\x16\x03\x03\x00\x05garbage that is no ServerHello" * 4)
    conn.close()


def _close_mid_handshake(conn: socket.socket) -> None:
    conn.settimeout(1)
    conn.recv(10)  # part of the ClientHello, then gone
    conn.close()


def _silent(conn: socket.socket) -> None:
    pass  # holds the connection open, never answers the ClientHello


@pytest.mark.parametrize(
    ("behave", "needle"),
    [
        (_garbage, "x"),
        (_close_mid_handshake, "during the TLS handshake"),
        (_silent, "TLS handshake timed out"),
    ],
    ids=["garbage", "close-mid-handshake", "silent"],
)
def test_hostile_tls_peers_are_classified(behave, needle: str) -> None:
    h = Hostile(behave)
    try:
        t0 = time.monotonic()
        p, _ = run_json(
            f"https://127.0.0.1:{h.port}/", "-d", "1s", "-c", "2", "-w", "1", "-k",
            "--connect-timeout", "300ms",
        )  # fmt: skip
        line = one_line_error(p, 3, "no load could be generated")
        assert needle in line
        assert time.monotonic() - t0 < 20  # a hang guard: the run is bounded by -d
    finally:
        h.close()


# ---- the sample's 16-bit handshake time ---------------------------------------------------------


@given(st.integers(0, 10**15))
def test_f16_handshake_time_rounds_up_within_its_precision(ns: int) -> None:
    us = max(1, -(-ns // 1000))
    back = f16_ns(f16_us(ns)) // 1000
    assert back >= us
    assert back - us <= max(0, us // 2048)  # 11 bits of mantissa
    if us < 2048:
        assert back == us


# ---- barfast serve over HTTPS -------------------------------------------------------------------


def start_serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on https://" in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


def stop_serve(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


@pytest.mark.parametrize("resume", [True, False], ids=["tickets", "no-resume"])
def test_serve_over_https_counts_and_resumption(tls_nginx: TlsNginx, resume: bool) -> None:
    pki = tls_nginx.pki
    extra = () if resume else ("--no-tls-resume",)
    proc, url = start_serve(
        "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]), *extra
    )
    try:
        # every request on a new connection: each is a handshake, resumed when the server lets it
        p, rep = run_json(
            url,
            "-n",
            "300",
            "-c",
            "4",
            "-w",
            "1",
            "--cacert",
            str(pki["ca"]),
            "-H",
            "Connection: close",
        )
    finally:
        err = stop_serve(proc)
    assert p.returncode == 0, p.stderr
    assert rep["status"] == {"200": 300}
    assert f"{300} responses" in err
    if resume:
        assert rep["tls"]["resumed"] >= 300 - 4 - 4  # each slot's first handshake is full
    else:
        assert rep["tls"]["resumed"] == 0 and rep["tls"]["handshakes"] >= 300


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--tls-key", "/etc/hostname"), "--tls-key needs --tls-cert"),
        (("--tls-cert", "/nonexistent.pem"), "cannot read --tls-cert"),
        (("--no-tls-resume",), "--no-tls-resume needs --tls-cert"),
        (("--tls-cert", "/etc/hostname"), "--tls-cert"),
    ],
)
def test_serve_bad_tls_input_is_one_line(args: tuple[str, ...], needle: str) -> None:
    p = subprocess.run(
        barfast_cmd("serve", "--addr", "127.0.0.1:0", "-d", "1s", *args),
        capture_output=True,
        text=True,
        timeout=30,
    )
    one_line_error(p, 2, needle)


def test_python_api_and_a_scenario_over_https(tls_nginx: TlsNginx, tmp_path: Path) -> None:
    import barfast

    r = barfast.run(
        tls_nginx.url("https", "localhost"),
        requests=200,
        workers=1,
        cacert=str(tls_nginx.pki["ca"]),
    )
    assert r.completed == 200 and r.errors == 0
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        f"target: {tls_nginx.url('https', 'localhost').rstrip('/')}\n"
        "requests:\n  - {name: a, weight: 3, path: /}\n  - {name: b, weight: 1, path: /b}\n"
    )
    p, rep = run_json(str(mix), "-n", "400", "-w", "1", "--cacert", str(tls_nginx.pki["ca"]))
    assert p.returncode == 0, p.stderr
    eps = rep["endpoints"]
    assert eps["a"]["requests"]["completed"] + eps["b"]["requests"]["completed"] == 400
    # each connection's handshake is counted once, on the endpoint of its first request
    assert sum(e.get("tls_ms", {}).get("count", 0) for e in eps.values()) == rep["tls_ms"]["count"]
