"""Who may join a run over tcp: the --bind address check and CURVE authentication of remote workers.

Owns: the ZAP authenticator thread (zmq.auth) that checks a connecting worker's public key against
the --curve-clients folder, the socket monitor that sees failed CURVE handshakes, and the one-line
report of each refused peer (said once per address: a refused DEALER keeps retrying).
Never: lets a tcp ROUTER with --curve-secret accept an unauthenticated peer.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import sys
from typing import Any

import zmq

from barfast.status import UsageError


def _log(msg: str) -> None:
    print(f"barfast: {msg}", file=sys.stderr, flush=True)


def check_bind(bind: str) -> tuple[str, bool]:
    """tcp://ADDR:PORT -> (endpoint, is_loopback)."""
    if not bind.startswith("tcp://"):
        raise UsageError(f"bad --bind {bind!r}: expected tcp://ADDR:PORT")
    host, sep, port = bind[6:].rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad --bind {bind!r}: expected tcp://ADDR:PORT")
    h = host.strip("[]")
    if h in ("*", "0.0.0.0", "::"):
        return bind, False
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(h))
        except (OSError, ValueError):
            raise UsageError(f"bad --bind {bind!r}: cannot resolve {h!r}") from None
    return bind, ip.is_loopback


def _zap_authenticator(ctx: zmq.Context[Any]) -> Any:
    """zmq.auth.ThreadAuthenticator that also remembers whom it refused (address, reason)."""
    from zmq.auth.thread import ThreadAuthenticator

    class Reporting(ThreadAuthenticator):
        refusals: queue.Queue[tuple[str, str]]
        _current = "?"

        async def handle_zap_message(self, msg: list[bytes]) -> None:
            self._current = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
            await super().handle_zap_message(msg)

        def _send_zap_reply(
            self,
            request_id: bytes,
            status_code: bytes,
            status_text: bytes,
            user_id: str = "anonymous",
        ) -> None:
            if status_code != b"200":
                self.refusals.put((self._current, status_text.decode("utf-8", "replace")))
            super()._send_zap_reply(request_id, status_code, status_text, user_id)

    auth = Reporting(ctx, log=logging.getLogger("barfast.zap"))
    auth.refusals = queue.Queue()
    return auth


class Admission:
    """CURVE on one ROUTER socket, and the refusals it produces, for one run."""

    def __init__(self, ctx: zmq.Context[Any], run_id: str):
        self.ctx = ctx
        self.run_id = run_id
        self.auth: Any = None
        self.monitor: zmq.Socket[Any] | None = None
        self.refused: set[str] = set()

    def secure(self, sock: zmq.Socket[Any], curve_secret: str, curve_clients: str) -> None:
        """Make `sock` a CURVE server that admits only the public keys in `curve_clients`."""
        from barfast.fanout.keys import check_clients_dir, load_secret

        public, secret = load_secret(curve_secret, "--curve-secret")
        clients = check_clients_dir(curve_clients)
        self.auth = _zap_authenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(clients))
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        mon_ep = f"inproc://barfast-monitor-{self.run_id}"
        sock.monitor(
            mon_ep, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        self.monitor = self.ctx.socket(zmq.PAIR)
        self.monitor.connect(mon_ep)

    def refuse_once(self, key: str, msg: str) -> None:
        if key not in self.refused:
            self.refused.add(key)
            _log(msg)

    def report_refusals(self) -> None:
        """Say, once per peer, whom the authenticator or the handshake refused since last time."""
        if self.auth is not None:
            while True:
                try:
                    addr, reason = self.auth.refusals.get_nowait()
                except queue.Empty:
                    break
                why = "not authorised" if reason == "Unknown key" else reason
                self.refuse_once(
                    addr,
                    f"refused worker from {addr}: {why} (its public key is not in --curve-clients)",
                )
        if self.monitor is not None:
            from zmq.utils.monitor import recv_monitor_message

            while True:
                try:
                    ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.refuse_once(
                    f"handshake:{ev.get('endpoint')!r}",
                    "refused a worker: CURVE handshake failed "
                    "(does it use this coordinator's public key as --curve-server?)",
                )

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
