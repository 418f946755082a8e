"""CURVE key pairs for remote workers: `barfast keys NAME --dir DIR` and the loaders the sockets use.

Key files are ZeroMQ's own certificate format (zmq.auth.create_certificates): NAME.key holds the public
key (safe to copy to the coordinator's --curve-clients folder or to workers as --curve-server),
NAME.key_secret holds both keys and is written with mode 0600. Every failure is one UsageError line.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from barfast.status import UsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def keys_command(name: str, directory: str = ".") -> int:
    """Write DIR/NAME.key (public) and DIR/NAME.key_secret (secret, 0600); print both paths."""
    import zmq
    import zmq.auth

    if not _NAME_RE.match(name) or name.endswith((".key", ".key_secret")):
        raise UsageError(
            f"bad key name {name!r}: use letters, digits, '.', '_' or '-', no extension"
        )
    if not zmq.has("curve"):
        raise UsageError("this libzmq was built without CURVE support; cannot generate keys")
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create key folder {directory!r}: {exc.strerror}") from None
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise UsageError(f"{p} already exists; remove it or choose another name")
    old = os.umask(0o077)  # the secret file must never be readable by others, not even briefly
    try:
        pub_path, sec_path = zmq.auth.create_certificates(str(d), name)
    except OSError as exc:
        raise UsageError(f"cannot write keys in {directory!r}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(sec_path, 0o600)
    os.chmod(pub_path, 0o644)
    print(f"public key: {pub_path}")
    print(f"secret key: {sec_path}")
    print(
        "Give the public key to the other side (coordinator: --curve-clients DIR; "
        "worker: --curve-server FILE); keep the secret key private.",
        file=sys.stderr,
    )
    return 0


def load_secret(path: str, what: str) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file, or a one-line UsageError."""
    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {path!r} does not exist or is not a file")
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc}") from None
    if not secret:
        raise UsageError(f"{what} {path!r} holds no secret key (pass the NAME.key_secret file)")
    return public, secret


def load_public(path: str, what: str) -> bytes:
    """The public key from a NAME.key (or NAME.key_secret) file, or a one-line UsageError."""
    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} {path!r} does not exist or is not a file")
    try:
        public, _ = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc}") from None
    return public


def check_clients_dir(path: str) -> Path:
    """The --curve-clients folder must exist and hold at least one NAME.key public key."""
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"--curve-clients {path!r} is not a folder")
    if not any(f.suffix == ".key" for f in p.iterdir()):
        raise UsageError(f"--curve-clients {path!r} holds no NAME.key public key files")
    return p
