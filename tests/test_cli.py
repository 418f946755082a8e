"""The CLI as a user meets it (a real process): bad input is exit 2 and one line, no traceback;
no load is exit 3 with a reason; --version works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import barfast_cmd, free_port


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(barfast_cmd(*args), capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("barfast: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert p.stdout == ""


# Nothing listens on a fresh free port; none of these may get as far as sending anything.
URL = f"http://127.0.0.1:{free_port()}/"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("not-a-url",), "bad URL"),
        (("http://",), "no host"),
        (("ftp://127.0.0.1/",), "http[s]://"),
        (("http://127.0.0.1:9/", "--cacert", "x.pem"), "only for an https:// URL"),
        (("https://127.0.0.1:9/", "--cacert", "/nonexistent.pem"), "cannot read --cacert"),
        (("https://127.0.0.1:9/", "--key", "/etc/hostname"), "--key needs --cert"),
        (("http://127.0.0.1:9/", "--unix-socket", "/" + "x" * 200), "at most 107 bytes"),
        ((URL, "-d", "5x"), "bad duration"),
        ((URL, "-d", "0s"), "--duration"),
        ((URL, "-c", "0"), "--connections"),
        ((URL, "--body-file", "/nonexistent/body.bin"), "body file"),
        ((URL, "-H", "NoColonHere"), "bad header"),
        ((URL, "-H", "Bad Name: x"), "bad header"),
        ((URL, "-R", "-5"), "rate"),
        ((URL, "-R", "abc"), "rate"),
        ((URL, "-R", "2e9"), "at most 1e+09"),
        ((URL, "--stages", "1s:100,1s:5e9"), "at most 1e+09"),
        ((URL, "-R", "100", "--stages", "1s:100"), "mutually exclusive"),
        ((URL, "--stages", "1s"), "bad stage"),
        ((URL, "--arrival", "bursty"), "--arrival"),
        ((URL, "--timeout", "soon"), "--timeout"),
        ((URL, "-n", "0"), "--requests"),
        ((URL, "--max-connections", "3", "-c", "10"), "--max-connections"),
        ((URL, "-o", "/nonexistent-dir/report.json"), "cannot write report"),
    ],
)
def test_bad_input_is_exit_2_one_line(args: tuple[str, ...], needle: str) -> None:
    p = run("run", *args)
    assert_one_line_error(p, 2, needle)


def test_bad_option_value_without_url() -> None:
    # With no URL the embedded target would start: bad options must fail before it does.
    p = run("run", "-c", "0")
    assert_one_line_error(p, 2, "--connections")


def test_more_connections_than_descriptors_is_exit_2() -> None:
    # Local workers inherit our RLIMIT_NOFILE; a plan over its hard limit fails before any worker
    # starts (it used to print a report of workers that each failed with EMFILE, exit 3).
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 10**7:
        pytest.skip(f"the hard descriptor limit ({hard}) is too high to exceed")
    p = run("run", URL, "-w", "1", "-c", str(hard), "-d", "1s")
    assert_one_line_error(p, 2, f"{hard} connections", "file descriptors", f"allows {hard}")


def test_unresolvable_host_is_exit_3() -> None:
    p = run("run", "http://nonexistent.invalid/", "-d", "1s")
    assert_one_line_error(p, 3, "cannot resolve", "nonexistent.invalid")


def test_connection_refused_is_exit_3_with_reason() -> None:
    p = run("run", URL, "-d", "10s", "-c", "2")
    assert_one_line_error(p, 3, "no load could be generated", "ECONNREFUSED")


def test_version() -> None:
    p = run("--version")
    assert p.returncode == 0
    assert p.stdout.startswith("barfast ")
    p = run("-V")
    assert p.returncode == 0 and p.stdout.startswith("barfast ")


@pytest.mark.parametrize("preset, want", [(None, "1"), ("4", "4")])
def test_cli_runs_one_blas_thread_unless_told(preset: str | None, want: str) -> None:
    # The CLI sets OPENBLAS_NUM_THREADS=1 before numpy loads (its pool's start-up spin cost ~0.2 s
    # of CPU per `-w 1` run) and local workers inherit it; a value the user set is kept.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = (
        "import os, sys; sys.argv = ['barfast', '--version']; "
        "from barfast.__main__ import main; main(); print(os.environ['OPENBLAS_NUM_THREADS'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == want, out.stdout
