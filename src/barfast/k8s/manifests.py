"""The Kubernetes objects of one distributed run, as plain dicts (render.py turns them into YAML).

One run is: a Secret of CURVE keys, a ConfigMap of the scenario's files (when there are any), a
headless Service naming the coordinator, a coordinator Job of one pod, and an Indexed Job of N
worker pods. Never: a templating language, or a pod that listens without CURVE.

Why each setting (docs/kubernetes.md says the same to users):
- CPU requests = limits in whole CPUs, memory requests = limits: Guaranteed QoS, and with the
  kubelet's static CPU manager an exclusive CPU per engine (a worker is one engine, one CPU).
- No restarts into a run under way: a worker that joins late is turned away by the coordinator
  (it has all the workers it expects), so a retry only costs. Workers: restartPolicy Never,
  backoffLimitPerIndex 0 (one pod's failure does not end its siblings, as a Job-wide backoffLimit
  would) and a podFailurePolicy that fails the whole Job on a usage error (exit 2: every pod has
  the same arguments) and fails only that index otherwise. The coordinator: backoffLimit 0.
- activeDeadlineSeconds: the wait for workers + the run + a request timeout + a margin, so a stuck
  run cannot hold its nodes; ttlSecondsAfterFinished removes finished Jobs, pods and logs.
- Workers spread over nodes (preferred pod anti-affinity: a required one would leave pods pending
  on a cluster with fewer nodes than workers, and the coordinator waits only --wait-timeout).
- net.ipv4.ip_local_port_range is a safe sysctl (settable by any pod, allowed under the baseline
  and restricted Pod Security levels): widened to 1024-65535, since each connection to one
  destination takes one ephemeral port. File-descriptor limits cannot be set by a pod; the worker
  checks both at start and warns (fanout/worker.py limit_warnings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ZMQ_PORT = 5555
KEYS_MOUNT = "/etc/barfast/keys"
FILES_MOUNT = "/etc/barfast/files"
RESULTS_MOUNT = "/var/lib/barfast/results"
TMP_MOUNT = "/tmp"
RUN_AS_USER = 10001  # the Dockerfile's barfast user
PORT_RANGE = "1024 65535"
INDEX_ENV = "BARFAST_WORKER_INDEX"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Run:
    """What the manifests need to know about one run (render.py builds it from the options)."""

    name: str
    namespace: str | None
    image: str
    workers: int
    run_args: list[str]  # `barfast run` arguments after the target: the load options
    target: str  # a URL, or the scenario's path inside the pod
    wait_timeout: str  # as given, for --wait-timeout
    worker_idle_timeout: str
    deadline_s: int  # activeDeadlineSeconds of both Jobs
    ttl_s: int
    keys: dict[str, str]  # Secret data: file name -> text
    files: dict[str, bytes] = field(default_factory=dict)  # ConfigMap: relative path -> content
    memory: str = "512Mi"
    results_claim: str | None = None  # a PersistentVolumeClaim for the results, else emptyDir
    image_pull_policy: str = "IfNotPresent"


def labels(run: Run, component: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "barfast",
        "app.kubernetes.io/instance": run.name,
    }
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def _meta(run: Run, name: str, component: str | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "labels": labels(run, component)}
    if run.namespace:
        m["namespace"] = run.namespace
    return m


def service_name(run: Run) -> str:
    return run.name


def file_key(path: str) -> str:
    """A ConfigMap key for a relative path (keys may not hold '/': [-._a-zA-Z0-9]+)."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in path.replace("/", "__"))


def secret(run: Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(run, f"{run.name}-keys"),
        "type": "Opaque",
        "stringData": dict(run.keys),
    }


def config_map(run: Run) -> dict[str, Any]:
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    import base64

    for path, content in run.files.items():
        try:
            data[file_key(path)] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[file_key(path)] = base64.b64encode(content).decode("ascii")
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(run, f"{run.name}-files"),
    }
    if data:
        cm["data"] = data
    if binary:
        cm["binaryData"] = binary
    return cm


def service(run: Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(run, service_name(run), "coordinator"),
        "spec": {
            "clusterIP": "None",  # headless: the name resolves to the coordinator pod itself
            # workers may look the name up before the coordinator pod counts as ready
            "publishNotReadyAddresses": True,
            "selector": labels(run, "coordinator"),
            "ports": [{"name": "zmq", "port": ZMQ_PORT, "targetPort": ZMQ_PORT, "protocol": "TCP"}],
        },
    }


def _resources(run: Run) -> dict[str, Any]:
    r = {"cpu": "1", "memory": run.memory}
    return {"requests": dict(r), "limits": dict(r)}


def _security() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": PORT_RANGE}],
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _results_volume(run: Run) -> dict[str, Any]:
    if run.results_claim:
        return {"name": "results", "persistentVolumeClaim": {"claimName": run.results_claim}}
    return {"name": "results", "emptyDir": {}}


def _pod_env() -> list[dict[str, Any]]:
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def _files_volume(run: Run) -> dict[str, Any]:
    return {
        "name": "files",
        "configMap": {
            "name": f"{run.name}-files",
            "defaultMode": 0o444,
            "items": [{"key": file_key(p), "path": p} for p in sorted(run.files)],
        },
    }


def _files_mount() -> dict[str, Any]:
    return {"name": "files", "mountPath": FILES_MOUNT, "readOnly": True}


def coordinator_job(run: Run) -> dict[str, Any]:
    pod_sc, ctr_sc = _security()
    args = [
        "run",
        run.target,
        *run.run_args,
        "--bind",
        f"tcp://0.0.0.0:{ZMQ_PORT}",
        "--expect-workers",
        str(run.workers),
        "--wait-timeout",
        run.wait_timeout,
        "--curve-secret",
        f"{KEYS_MOUNT}/coordinator.key_secret",
        "--curve-clients",
        f"{KEYS_MOUNT}/clients",
        "-o",
        f"{RESULTS_MOUNT}/report.json",
    ]
    key_items = [{"key": "coordinator.key_secret", "path": "coordinator.key_secret"}] + [
        {"key": f"worker-{i}.key", "path": f"clients/worker-{i}.key"} for i in range(run.workers)
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "keys",
            "secret": {
                "secretName": f"{run.name}-keys",
                "defaultMode": 0o440,  # group: fsGroup, the barfast user
                "items": key_items,
            },
        },
        _results_volume(run),
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True},
        {"name": "results", "mountPath": RESULTS_MOUNT},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    ]
    if run.files:
        volumes.append(_files_volume(run))
        mounts.append(_files_mount())
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(run, f"{run.name}-coordinator", "coordinator"),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "activeDeadlineSeconds": run.deadline_s,
            "ttlSecondsAfterFinished": run.ttl_s,
            "template": {
                "metadata": {"labels": labels(run, "coordinator")},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_sc,
                    "containers": [
                        {
                            "name": "coordinator",
                            "image": run.image,
                            "imagePullPolicy": run.image_pull_policy,
                            "command": ["barfast"],
                            "args": args,
                            "env": _pod_env(),
                            "ports": [{"name": "zmq", "containerPort": ZMQ_PORT}],
                            "resources": _resources(run),
                            "securityContext": ctr_sc,
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def workers_job(run: Run) -> dict[str, Any]:
    pod_sc, ctr_sc = _security()
    idx = f"$({INDEX_ENV})"  # expanded by the kubelet from the container's env
    args = [
        "worker",
        "--connect",
        f"tcp://{service_name(run)}:{ZMQ_PORT}",
        "--once",
        "--idle-timeout",
        run.worker_idle_timeout,
        "--curve-secret",
        f"{KEYS_MOUNT}/worker-{idx}.key_secret",
        "--curve-server",
        f"{KEYS_MOUNT}/coordinator.key",
        "--result-file",
        f"{RESULTS_MOUNT}/worker-{idx}.json",
    ]
    key_items = [{"key": "coordinator.key", "path": "coordinator.key"}] + [
        {"key": f"worker-{i}.key_secret", "path": f"worker-{i}.key_secret"}
        for i in range(run.workers)
    ]
    env = [
        {
            "name": INDEX_ENV,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
        },
        *_pod_env(),
    ]
    component = labels(run, "worker")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(run, f"{run.name}-workers", "worker"),
        "spec": {
            "completionMode": "Indexed",
            "completions": run.workers,
            "parallelism": run.workers,
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": run.workers,
            "podFailurePolicy": {
                "rules": [
                    {
                        # a usage error: every pod has the same arguments, so all would fail
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]},
                    },
                    {
                        # anything else (coordinator lost, no plan, evicted): this index only
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": "worker",
                            "operator": "NotIn",
                            "values": [0, 2],
                        },
                    },
                    {
                        "action": "FailIndex",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "activeDeadlineSeconds": run.deadline_s,
            "ttlSecondsAfterFinished": run.ttl_s,
            "template": {
                "metadata": {"labels": component},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_sc,
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {"matchLabels": component},
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                    "containers": [
                        {
                            "name": "worker",
                            "image": run.image,
                            "imagePullPolicy": run.image_pull_policy,
                            "command": ["barfast"],
                            "args": args,
                            "env": env,
                            "resources": _resources(run),
                            "securityContext": ctr_sc,
                            "volumeMounts": [
                                {"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True},
                                {"name": "results", "mountPath": RESULTS_MOUNT},
                                {"name": "tmp", "mountPath": TMP_MOUNT},
                                # a worker reads a --cacert bundle on its own host
                                *([_files_mount()] if run.files else []),
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "keys",
                            "secret": {
                                "secretName": f"{run.name}-keys",
                                "defaultMode": 0o440,  # group: fsGroup, the barfast user
                                "items": key_items,
                            },
                        },
                        _results_volume(run),
                        {"name": "tmp", "emptyDir": {}},
                        *([_files_volume(run)] if run.files else []),
                    ],
                },
            },
        },
    }


def documents(run: Run) -> list[dict[str, Any]]:
    """Every object of the run, in the order `kubectl apply` should create them."""
    docs = [secret(run)]
    if run.files:
        docs.append(config_map(run))
    docs += [service(run), coordinator_job(run), workers_job(run)]
    return docs
