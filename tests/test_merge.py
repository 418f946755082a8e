"""Remote workers keep their own results, and `barfast merge` rebuilds the coordinator's report from
them: on loopback with real processes (test_k8s_netns.py does it in namespaces from the rendered
manifests), the JSON encoding's round trip, the limits a worker warns of, and every bad input.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from barfast.fanout.worker import limit_warnings, local_port_range
from barfast.result import workerfile
from conftest import barfast_cmd, free_port


def _run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(barfast_cmd(*args), capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture(scope="module")
def remote_run(nginx, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A coordinator and two remote workers (`--once --result-file`), as on Kubernetes."""
    d = tmp_path_factory.mktemp("merge")
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    before = nginx.requests_logged()
    coord = subprocess.Popen(
        barfast_cmd("run", "--bind", ep, "--expect-workers", "2", "-c", "4", "-n", "4000",
                    "--json", nginx.url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            barfast_cmd(
                "worker", "--connect", ep, "--once", "--result-file", str(d / f"w{i}.json")
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**__import__("os").environ, "POD_NAME": f"run-workers-{i}-abcde"},
        )  # fmt: skip
        for i in range(2)
    ]
    out, err = coord.communicate(timeout=60)
    logs = []
    for i, w in enumerate(workers):
        _, werr = w.communicate(timeout=30)
        assert w.returncode == 0, werr
        (d / f"w{i}.log").write_text(werr)
        logs.append(werr)
    assert coord.returncode == 0, err
    served = nginx.wait_logged(before + 4000) - before
    return {"dir": d, "report": json.loads(out), "served": served, "logs": logs}


def test_merged_worker_files_equal_the_coordinators_report(remote_run: dict) -> None:
    d, rep = remote_run["dir"], remote_run["report"]
    assert rep["requests"]["completed"] == 4000 == remote_run["served"]
    r = _run("merge", "--json", str(d / "w0.json"), str(d / "w1.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rep
    # the pods' names are in the report, as the coordinator had them from the workers' hellos
    assert sorted(w["pod"] for w in rep["workers"]) == [
        "run-workers-0-abcde",
        "run-workers-1-abcde",
    ]


def test_merged_worker_logs_equal_the_coordinators_report(remote_run: dict) -> None:
    d = remote_run["dir"]
    assert all(workerfile.RESULT_LINE_PREFIX in log for log in remote_run["logs"])
    r = _run("merge", "--json", str(d / "w1.log"), str(d / "w0.log"))  # any order
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == remote_run["report"]
    text = _run("merge", str(d / "w0.log"), str(d / "w1.log"))
    assert "4000 requests in" in text.stdout and "pod run-workers-0-abcde" in text.stdout


def test_a_missing_worker_makes_a_partial_report_and_exit_3(remote_run: dict) -> None:
    d = remote_run["dir"]
    r = _run("merge", "--json", str(d / "w0.json"))
    assert r.returncode == 3
    one = json.loads(r.stdout)
    (row,) = one["workers"]
    full = {w["worker"]: w for w in remote_run["report"]["workers"]}
    assert one["requests"]["completed"] == row["completed"] == full[row["worker"]]["completed"]
    missing = 1 - row["worker"]
    assert (
        r.stderr.strip() == f"barfast: the report is partial: no result from worker {missing} of 2"
    )


def _write(p: Path, text: str) -> str:
    p.write_text(text)
    return str(p)


def test_bad_merge_input_is_one_line_and_exit_2(remote_run: dict, tmp_path: Path) -> None:
    d = remote_run["dir"]
    doc = json.loads((d / "w0.json").read_text())
    other_run = dict(doc, run_id="0" * 32, worker=1)
    cases = [
        ([str(tmp_path / "nope.json")], "no such file"),
        ([_write(tmp_path / "a.json", "{not json")], "not valid JSON"),
        ([_write(tmp_path / "b.json", '{"schema": "barfast.report/1"}')], "not a barfast.worker-result/1"),
        ([_write(tmp_path / "c.log", "hello\nworld\n")], "neither a worker result file nor a log"),
        ([str(d / "w0.json"), _write(tmp_path / "d.json", json.dumps(other_run))], "different runs"),
        ([str(d / "w0.json"), str(d / "w0.log")], f"worker {doc['worker']} appears twice"),
        ([_write(tmp_path / "e.json", json.dumps(dict(doc, snapshots=[{"worker": doc["worker"], "seq": 0, "final": True, "counters": {}, "hist": {"latency": {"$b64": "AAAA"}}}])))], "snapshot refused"),
        ([str(tmp_path)], "is a directory"),
        ([], "Missing argument"),
    ]  # fmt: skip
    for files, fragment in cases:
        r = _run("merge", *files)
        assert r.returncode == 2, (files, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (files, r.stderr)
        assert "Traceback" not in r.stderr


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=8)
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
        st.dictionaries(st.sampled_from(["$b64", "$map"]), inner, max_size=1),
    ),
    max_leaves=12,
)


@given(_values)
def test_the_json_encoding_round_trips_bytes_and_integer_keys(value) -> None:
    text = json.dumps(workerfile._to_json(value))
    assert workerfile._from_json(json.loads(text)) == value


def test_limit_warnings_name_the_limit_and_the_fix() -> None:
    ports = local_port_range()
    assert ports is not None  # Linux
    span = ports[1] - ports[0] + 1
    assert not any("ip_local_port_range" in w for w in limit_warnings(span))
    over = limit_warnings(span + 1)
    assert any(f"{span} ports" in w and "1024 65535" in w for w in over)


def test_worker_warns_of_a_low_descriptor_limit_at_start() -> None:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))

    r = subprocess.run(
        barfast_cmd("worker", "--connect", f"tcp://127.0.0.1:{free_port()}", "--idle-timeout", "0.2s", "--once"),
        capture_output=True, text=True, timeout=30, preexec_fn=lower,
    )  # fmt: skip
    assert r.returncode == 3  # --once: no plan within the idle timeout
    assert "warning: the file-descriptor hard limit is 4096" in r.stderr
    assert "no plan from" in r.stderr


def test_result_file_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    r = _run(
        "worker", "--connect", "tcp://127.0.0.1:9", "--result-file", str(tmp_path / "no" / "w.json")
    )
    assert r.returncode == 2
    assert r.stderr.strip().endswith("no directory " + repr(str(tmp_path / "no")))
