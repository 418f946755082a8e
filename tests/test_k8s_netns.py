"""The rendered manifests, executed: each pod the Jobs would create runs as a process in its own
network namespace, the way a kubelet would start it, against nginx in another namespace.

What this test's small kubelet does with each pod (and what it leaves out):
- pods: the coordinator Job's one pod and the worker Job's `completions` pods, named as the Job
  controller names them (JOB-[INDEX-]xxxxx); an Indexed pod gets JOB_COMPLETION_INDEX and the
  completion-index annotation that the manifests' fieldRef reads;
- env: `value` as is; fieldRef metadata.name and metadata.annotations[...] resolved; then
  `$(VAR)` in command and args expanded from that env, as the kubelet does ($$ stays $);
- volumes: a Secret's or ConfigMap's items written as files (with defaultMode) under a temp
  folder; emptyDir a fresh folder per pod; a PersistentVolumeClaim one folder shared by all pods.
  Mount roots are mapped: every argument that starts with a container's mountPath has that
  prefix replaced by the volume's folder (the only change made to command or args);
- the command: command[0] looked up on PATH (this venv's `barfast`, what the image's ENTRYPOINT
  installs), with the expanded, mapped args; stdout and stderr go to a per-pod log file, as
  `kubectl logs` shows them;
- network: one namespace per pod (10.213.0.0/24 exists only inside them, test_fanout_netns.py's
  helpers), pod sysctls written inside the pod's namespace (ip_local_port_range is per
  namespace), and the headless Service's name resolving to the coordinator pod's address through
  /etc/netns/NS/hosts, which `ip netns exec` bind-mounts over /etc/hosts for that process alone;
- not emulated: runAsUser (processes run as this test's user), resource limits, scheduling.

Needs root (ip netns). Skips with the reason otherwise. Everything is torn down in the finalizer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from barfast.k8s.render import render_command
from barfast.result import workerfile
from test_fanout_netns import SUBNET, Netns, _ip, _nginx_in

pytestmark = [pytest.mark.netns, pytest.mark.slow]

RUN = "bfk"
WORKERS = 3
HTTP_PORT = 8080  # inside the target's namespace (_nginx_in)


class PodNet(Netns):
    """Test_fanout_netns's namespaces, with one namespace per pod and per-pod /etc/hosts."""

    def __init__(self, hosts: dict[str, int]) -> None:
        super().__init__()
        self.hosts = hosts
        self.etc: list[Path] = []

    def build(self, hosts: dict[str, int] | None = None) -> None:
        super().build(self.hosts if hosts is None else hosts)

    def hosts_file(self, host: str, entries: dict[str, str]) -> None:
        d = Path("/etc/netns") / self.ns(host)
        d.mkdir(parents=True, exist_ok=True)
        self.etc.append(d)
        lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ip in entries.items()]
        (d / "hosts").write_text("\n".join(lines) + "\n")

    def spawn_logged(self, host: str, cmd: list[str], env: dict[str, str], log: Path) -> Any:
        f = open(log, "w")  # noqa: SIM115 - closed with the process, below
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        f.close()  # the child holds its own copy
        self.procs.append(p)
        return p

    def teardown(self) -> None:
        super().teardown()
        for d in self.etc:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def podnet():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed")
    hosts = {"coordinator": 1, "target": 2, **{f"w{i}": 11 + i for i in range(WORKERS)}}
    n = PodNet(hosts)
    try:
        n.build()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        n.teardown()
        pytest.skip(f"cannot create network namespaces here: {exc}")
    yield n
    n.teardown()
    left = _ip("netns", "list").stdout
    assert n.tag not in left, f"namespaces left behind: {left}"


# --- the kubelet ---------------------------------------------------------------------------------
def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, $$ is a literal $, anything else
    stays as written."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, text)


class Pod:
    def __init__(self, job: dict[str, Any], index: int | None, objects: dict, root: Path):
        spec = job["spec"]["template"]
        suffix = secrets.token_hex(3)[:5]
        job_name = job["metadata"]["name"]
        self.name = f"{job_name}-{index}-{suffix}" if index is not None else f"{job_name}-{suffix}"
        self.annotations = (
            {"batch.kubernetes.io/job-completion-index": str(index)} if index is not None else {}
        )
        self.spec = spec["spec"]
        self.root = root / self.name
        (c,) = self.spec["containers"]
        self.container = c
        self.env = {"PATH": os.environ["PATH"], "HOME": str(self.root)}
        if index is not None:
            self.env["JOB_COMPLETION_INDEX"] = str(index)  # set by the Job controller
        for e in c.get("env", []):
            self.env[e["name"]] = self._value(e)
        self.mounts = self._volumes(objects, root)
        self.log = root / f"{self.name}.log"

    def _value(self, e: dict[str, Any]) -> str:
        if "value" in e:
            return expand(str(e["value"]), self.env)
        path = e["valueFrom"]["fieldRef"]["fieldPath"]
        if path == "metadata.name":
            return self.name
        m = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path)
        assert m, f"fieldRef {path} is not emulated"
        return self.annotations[m.group(1)]

    def _volumes(self, objects: dict, root: Path) -> list[tuple[str, Path, bool]]:
        dirs: dict[str, Path] = {}
        for v in self.spec["volumes"]:
            if "secret" in v or "configMap" in v:
                src = v.get("secret") or v["configMap"]
                obj = objects[src.get("secretName") or src.get("name")]
                data = {k: s.encode() for k, s in (obj.get("stringData") or {}).items()}
                data.update({k: s.encode() for k, s in (obj.get("data") or {}).items()})
                d = self.root / "volumes" / v["name"]
                for item in src["items"]:
                    f = d / item["path"]
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_bytes(data[item["key"]])
                    f.chmod(src.get("defaultMode", 0o644))
            elif "emptyDir" in v:
                d = self.root / "volumes" / v["name"]
                d.mkdir(parents=True)
            else:
                d = root / "claims" / v["persistentVolumeClaim"]["claimName"]
                d.mkdir(parents=True, exist_ok=True)
            dirs[v["name"]] = d
        out = [
            (m["mountPath"], dirs[m["name"]], bool(m.get("readOnly")))
            for m in self.container["volumeMounts"]
        ]
        return sorted(out, key=lambda t: -len(t[0]))  # the longest mount path wins

    def host_path(self, path: str) -> Path:
        for mount, d, _ in self.mounts:
            if path == mount or path.startswith(mount + "/"):
                return d / path[len(mount) :].lstrip("/")
        raise AssertionError(f"{path} is on no volume of {self.name}")

    def argv(self) -> list[str]:
        cmd = [expand(a, self.env) for a in self.container["command"]]
        args = [expand(a, self.env) for a in self.container.get("args", [])]
        mapped = []
        for a in args:
            for mount, d, _ in self.mounts:
                if a == mount or a.startswith(mount + "/"):
                    a = str(d) + a[len(mount) :]
                    break
            mapped.append(a)
        exe = shutil.which(cmd[0], path=self.env["PATH"])
        assert exe, f"{cmd[0]} is not on PATH"
        return [exe, *cmd[1:], *mapped]

    def start(self, net: PodNet, host: str) -> subprocess.Popen[str]:
        for s in self.spec.get("securityContext", {}).get("sysctls", []):
            net.run(
                net.ns(host),
                "sh",
                "-c",
                'echo "$1" > "$2"',
                "sh",
                s["value"],
                "/proc/sys/" + s["name"].replace(".", "/"),
            )
        return net.spawn_logged(host, self.argv(), self.env, self.log)


def render_run(**kw: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    render_command(
        f"http://{SUBNET}.2:{HTTP_PORT}/",
        name=RUN,
        workers=WORKERS,
        wait_timeout="30s",
        out=out,
        **kw,
    )
    return list(yaml.safe_load_all(out.getvalue()))


class Cluster:
    """The rendered objects, their pods started as processes."""

    def __init__(self, net: PodNet, docs: list[dict[str, Any]], root: Path):
        self.net = net
        root.mkdir(parents=True, exist_ok=True)
        self.objects = {d["metadata"]["name"]: d for d in docs if d["kind"] != "Job"}
        jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
        coord_job, workers_job = jobs[f"{RUN}-coordinator"], jobs[f"{RUN}-workers"]
        assert coord_job["spec"]["completions"] == 1
        assert workers_job["spec"]["completionMode"] == "Indexed"
        self.coordinator = Pod(coord_job, None, self.objects, root)
        n = workers_job["spec"]["completions"]
        self.workers = [Pod(workers_job, i, self.objects, root) for i in range(n)]
        svc = next(d for d in docs if d["kind"] == "Service")
        assert svc["spec"]["selector"] == coord_job["spec"]["template"]["metadata"]["labels"]
        for i in range(n):  # the Service's name -> the coordinator pod's address
            net.hosts_file(f"w{i}", {svc["metadata"]["name"]: f"{SUBNET}.1"})

    def start(self) -> tuple[subprocess.Popen[str], list[subprocess.Popen[str]]]:
        # Workers first: pods start in any order, and a worker that finds no coordinator yet
        # keeps saying hello until the coordinator's pod is up.
        workers = [w.start(self.net, f"w{i}") for i, w in enumerate(self.workers)]
        time.sleep(0.5)
        return self.coordinator.start(self.net, "coordinator"), workers


def wait_all(procs: list[subprocess.Popen[str]], timeout_s: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in procs]


def served(log: Path, at_least: int, timeout_s: float = 10.0) -> int:
    """nginx's access-log lines: it writes a request's line after its response."""
    deadline = time.monotonic() + timeout_s
    while (n := log.read_bytes().count(b"\n")) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def logged(path: Path, needle: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def test_manifests_run_merge_exactly_and_the_workers_results_rebuild_the_report(
    podnet: PodNet, tmp_path: Path
) -> None:
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    access = _nginx_in(podnet, run_dir)
    cluster = Cluster(podnet, render_run(connections=6, requests=9000, duration="30s"), tmp_path)
    coord, workers = cluster.start()
    codes = wait_all([coord, *workers])
    logs = {p.name: p.log.read_text() for p in [cluster.coordinator, *cluster.workers]}
    assert codes == [0] * (1 + WORKERS), logs
    c = cluster.coordinator
    report_path = c.host_path("/var/lib/barfast/results/report.json")
    rep = json.loads(report_path.read_text())
    assert rep["requests"]["completed"] == 9000 == served(access, 9000)
    # the report says which pods took part
    rows = rep["workers"]
    assert sorted(r["pod"] for r in rows) == sorted(w.name for w in cluster.workers)
    assert sum(r["completed"] for r in rows) == 9000
    assert "Workers:" in logs[c.name] and all(
        f"pod {w.name}" in logs[c.name] for w in cluster.workers
    )
    # the worker pods saw the sysctl the manifests set, so none warned of the port range
    for w in cluster.workers:
        assert "ip_local_port_range" not in logs[w.name], logs[w.name]
    # each worker's own result (its volume, and its log): merged, the coordinator's report exactly
    files = [str(w.host_path(f"/var/lib/barfast/results/worker-{i}.json"))
             for i, w in enumerate(cluster.workers)]  # fmt: skip
    merged, partial = workerfile.merge_docs([d for f in files for d in workerfile.load(f)])
    assert partial == []
    assert merged == rep
    from_logs, _ = workerfile.merge_docs(
        [d for w in cluster.workers for d in workerfile.load(str(w.log))]
    )
    assert from_logs == rep


def test_a_killed_worker_pod_is_named_and_the_run_exits_3(podnet: PodNet, tmp_path: Path) -> None:
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    access = _nginx_in(podnet, run_dir)
    cluster = Cluster(podnet, render_run(connections=6, duration="6s"), tmp_path)
    coord, workers = cluster.start()
    try:
        assert logged(cluster.coordinator.log, "remote worker(s) at"), "coordinator did not start"
        deadline = time.monotonic() + 20
        while access.read_bytes().count(b"\n") < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # a snapshot is due 1 s into the run: room for a busy machine to send it
        victim = cluster.workers[1]
        os.kill(workers[1].pid, signal.SIGKILL)  # `ip netns exec` execs: this is the worker
        codes = wait_all([coord, workers[0], workers[2]])
    finally:
        for p in (coord, *workers):
            with contextlib.suppress(ProcessLookupError):
                if p.poll() is None:
                    p.kill()
    log = cluster.coordinator.log.read_text()
    assert codes[0] == 3, log
    assert re.search(rf"worker \d \(pod {re.escape(victim.name)}\) lost", log), log
    rep = json.loads(
        cluster.coordinator.host_path("/var/lib/barfast/results/report.json").read_text()
    )
    lost = [r for r in rep["workers"] if r["lost"]]
    assert [r["pod"] for r in lost] == [victim.name]
    assert rep["workers_lost"] == [lost[0]["worker"]]
    assert lost[0]["completed"] > 0  # its data up to its last snapshot is kept
    # nginx saw everything counted, plus what the killed worker did after its last snapshot
    total = rep["requests"]["completed"]
    assert served(access, total) >= total
    assert codes[1:] == [0, 0]


def test_after_a_coordinator_sigkill_the_workers_results_merge_into_a_partial_report(
    podnet: PodNet, tmp_path: Path
) -> None:
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    access = _nginx_in(podnet, run_dir)
    cluster = Cluster(podnet, render_run(connections=6, duration="20s"), tmp_path)
    coord, workers = cluster.start()
    try:
        assert logged(cluster.coordinator.log, "remote worker(s) at"), "coordinator did not start"
        deadline = time.monotonic() + 20
        while access.read_bytes().count(b"\n") < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        coord.kill()
        # a worker whose coordinator is silent for 3 s stops its load, keeps its result, exits 3
        codes = wait_all(workers, timeout_s=30)
    finally:
        for p in (coord, *workers):
            if p.poll() is None:
                p.kill()
    assert codes == [3] * WORKERS, [w.log.read_text()[-2000:] for w in cluster.workers]
    files = [str(w.host_path(f"/var/lib/barfast/results/worker-{i}.json"))
             for i, w in enumerate(cluster.workers)]  # fmt: skip
    docs = [d for f in files for d in workerfile.load(f)]
    assert all(d["ended"] == "coordinator silent for 3 s" for d in docs)
    rep, partial = workerfile.merge_docs(docs)
    assert len(partial) == WORKERS and "ended early" in partial[0]
    req = rep["requests"]
    assert req["completed"] > 0
    assert sorted(r["pod"] for r in rep["workers"]) == sorted(w.name for w in cluster.workers)
    assert all(r["state"] == "done" for r in rep["workers"])  # each sent its final snapshot
    # what was sent, and only that: nginx answered every completed request, and no more than
    # were started (the in-flight ones at the stop may or may not have reached it)
    n = served(access, req["completed"])
    assert req["completed"] <= n <= req["started"]
    assert req["started"] == req["completed"] + req["errors"] + req["in_flight"]
    # and `barfast merge` says so: the report, then one line, exit 3
    r = subprocess.run(
        [shutil.which("barfast") or "barfast", "merge", "--json", *files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout) == rep
    assert r.stderr.strip().startswith("barfast: the report is partial: worker 0's run ended early")


def test_a_scenario_and_its_csv_run_from_the_configmap(podnet: PodNet, tmp_path: Path) -> None:
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    access = _nginx_in(podnet, run_dir)
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "ids.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(3000)))
    (src / "shop.yaml").write_text(
        f"target: http://{SUBNET}.2:{HTTP_PORT}\n"
        "load: {connections: 6, duration: 20s}\n"
        "data:\n  ids: {csv: data/ids.csv, order: unique}\n"
        'requests:\n  - {name: item, get: "/item/{{ ids.id }}"}\n'
    )
    out = io.StringIO()
    render_command(str(src / "shop.yaml"), name=RUN, workers=WORKERS, wait_timeout="30s", out=out)
    docs = list(yaml.safe_load_all(out.getvalue()))
    cluster = Cluster(podnet, docs, tmp_path / "pods")
    # the coordinator reads the scenario from the ConfigMap's mount, not from where it was rendered
    shutil.rmtree(src)
    coord, workers = cluster.start()
    codes = wait_all([coord, *workers])
    assert codes == [0] * (1 + WORKERS), cluster.coordinator.log.read_text()
    rep = json.loads(
        cluster.coordinator.host_path("/var/lib/barfast/results/report.json").read_text()
    )
    # unique rows: each id once over all workers, then the run stops
    assert rep["requests"]["completed"] == 3000 == served(access, 3000)
    paths = [line.split('"')[1].split()[1] for line in access.read_text().splitlines()]
    assert sorted(paths) == sorted(f"/item/{i}" for i in range(3000))
    assert rep["endpoints"]["item"]["requests"]["completed"] == 3000


def test_workers_that_never_join_fail_the_run_with_exit_3(podnet: PodNet, tmp_path: Path) -> None:
    out = io.StringIO()
    render_command(
        f"http://{SUBNET}.2:{HTTP_PORT}/",
        name=RUN,
        workers=WORKERS,
        wait_timeout="2s",
        duration="5s",
        out=out,
    )
    cluster = Cluster(podnet, list(yaml.safe_load_all(out.getvalue())), tmp_path)
    # one worker pod is never scheduled
    started = [w.start(podnet, f"w{i}") for i, w in enumerate(cluster.workers[:-1])]
    coord = cluster.coordinator.start(podnet, "coordinator")
    try:
        code = coord.wait(timeout=30)
    finally:
        for p in started:
            p.kill()
    log = cluster.coordinator.log.read_text()
    assert code == 3, log
    errors = [line for line in log.splitlines() if line.startswith("barfast: error:")]
    assert len(errors) == 1, log
    assert f"only {WORKERS - 1} of {WORKERS} remote workers" in errors[0]
    assert "within 2 s" in errors[0]
