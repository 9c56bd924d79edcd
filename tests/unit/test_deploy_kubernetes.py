"""deploy/kubernetes, as `kubectl apply -k` would apply it: the example overlay on the base, rendered
by `kubectl kustomize` (offline; skipped without kubectl, and test_deploy_kustomize.py checks the
files anyway). Core objects against the Kubernetes schemas, and what no schema knows: the KEDA
objects against the queue and the processor they scale, the canary and the queue Job against the
services, shutdown times against the drains, probes, settings names, the payload bucket and its IAM
grants, exposure and security."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from conveyor.settings import CanarySettings, ProcessorSettings, SqsSettings, WriterSettings
from conveyor.writer.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.unit.deploy_support import (
    IMAGE_UID,
    PAYLOAD_BUCKET_VARIABLE,
    PROCESSOR_DRAIN_SECONDS,
    ROOT,
    SQS_IN_FLIGHT_LIMIT,
)

K8S = ROOT / "deploy" / "kubernetes"
OVERLAY = Path("overlays") / "example"
KUBECTL = shutil.which("kubectl")
if KUBECTL is None:
    pytest.skip("kubectl (kustomize) is not installed", allow_module_level=True)
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())  # oldest supported (preStop sleep), newest

Doc = dict[str, Any]


@cache
def _rendered() -> tuple[Doc, ...]:
    """The example overlay built by kustomize, with its secret.env made from secret.env.example."""
    with tempfile.TemporaryDirectory() as folder:
        copied = Path(folder) / "kubernetes"
        shutil.copytree(K8S, copied)
        shutil.copy(copied / OVERLAY / "secret.env.example", copied / OVERLAY / "secret.env")
        built = subprocess.run(
            [str(KUBECTL), "kustomize", str(copied / OVERLAY)], capture_output=True, text=True, check=True, timeout=60
        )
    return tuple(yaml.safe_load_all(built.stdout))


def documents() -> Iterator[tuple[str, Doc]]:
    """Every object the overlay applies, with its kind (fresh copies: a test may not change what
    another reads)."""
    for doc in _rendered():
        yield doc["kind"], copy.deepcopy(doc)


def one(kind: str, name: str) -> Doc:
    found: list[Doc] = [doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def pod_spec(workload: Doc) -> Doc:
    """The pod template's spec of a Deployment, a Job or a CronJob."""
    template = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    spec: Doc = template["template"]["spec"]
    return spec


def container(workload: Doc) -> Doc:
    containers: list[Doc] = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def secret_value(reference: Doc) -> str:
    secret = one("Secret", reference["name"])
    return base64.b64decode(secret["data"][reference["key"]]).decode()


def env_of(workload: Doc) -> dict[str, str]:
    """The container's CONVEYOR_* variables: the ConfigMaps it reads, then its own `env` (values from
    the overlay's Secret decoded)."""
    spec = container(workload)
    values: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        values |= one("ConfigMap", source["configMapRef"]["name"])["data"]
    for item in spec.get("env", []):
        if "valueFrom" in item:
            values[item["name"]] = secret_value(item["valueFrom"]["secretKeyRef"])
        else:
            values[item["name"]] = item["value"]
    return values


def secret_refs(workload: Doc) -> dict[str, Doc]:
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container(workload).get("env", [])
        if "valueFrom" in item
    }


def port_number(spec: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in spec["ports"] if p["name"] == port]
    return int(number)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


WRITER = one("Deployment", "queue-writer")
PROCESSOR = one("Deployment", "queue-processor")
CANARY = one("CronJob", "conveyor-canary")
QUEUES_JOB = one("Job", "conveyor-queues-create")
SCALED = one("ScaledObject", "queue-processor")
TRIGGER = SCALED["spec"]["triggers"][0]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_core_objects_pass_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for name, doc in documents():
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error or unknown field
        checked.append((name, doc["kind"]))
    kinds = {kind for _, kind in checked}
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceAccount", "CronJob", "Job"}
    assert expected | {"ConfigMap", "Secret"} <= kinds


def test_everything_is_in_the_namespace_and_runs_the_overlays_image() -> None:
    overlay = yaml.safe_load((K8S / OVERLAY / "kustomization.yaml").read_text())
    [image] = overlay["images"]
    for _, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "conveyor", doc["metadata"]["name"]
    images = {container(d)["image"] for d in (WRITER, PROCESSOR, CANARY, QUEUES_JOB)}
    assert images == {f"{image['newName']}:{image['newTag']}"}  # one image: Conveyor plus the handler
    # the overlay's app, the same in both services (and no handler beside it: both set is refused)
    assert env_of(PROCESSOR)["CONVEYOR_APP"] == env_of(WRITER)["CONVEYOR_APP"] == "orders.messages:app"
    assert "CONVEYOR_HANDLER" not in env_of(PROCESSOR)


def test_the_idempotency_store_is_one_secret_for_writers_and_processors() -> None:
    writer, processor = secret_refs(WRITER), secret_refs(PROCESSOR)
    assert writer["CONVEYOR_IDEMPOTENCY_STORE"] == processor["CONVEYOR_IDEMPOTENCY_STORE"]
    assert writer["CONVEYOR_IDEMPOTENCY_STORE"]["optional"] is True  # no key in the Secret: the feature is off
    for deployment, settings in ((WRITER, WriterSettings), (PROCESSOR, ProcessorSettings)):
        store = settings(idempotency_store=env_of(deployment)["CONVEYOR_IDEMPOTENCY_STORE"]).idempotency_store
        assert store is not None
        assert store.startswith(("redis://", "rediss://"))  # shared by every replica (SQLite is one host's)


def test_the_canary_probes_the_writers_service_every_minute_with_the_processors_secret() -> None:
    spec = CANARY["spec"]
    assert spec["schedule"] == "* * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    args = container(CANARY)["args"]
    assert args[:3] == ["conveyor", "canary", "--once"]
    timeout = float(args[args.index("--timeout") + 1])
    assert timeout < job["activeDeadlineSeconds"] < 60  # a probe ends before the next minute's
    assert secret_refs(CANARY)["CONVEYOR_CANARY_SECRET"] == secret_refs(PROCESSOR)["CONVEYOR_CANARY_SECRET"]
    env = env_of(CANARY)
    assert ProcessorSettings(canary_secret=env["CONVEYOR_CANARY_SECRET"]).canary_secret is not None  # long enough
    url = urlparse(env["CONVEYOR_CANARY_URL"])
    service = one("Service", "queue-writer")
    assert url.hostname == service["metadata"]["name"]
    assert url.port in {port["port"] for port in service["spec"]["ports"]}
    assert env["CONVEYOR_QUEUE_URL"] == env_of(PROCESSOR)["CONVEYOR_QUEUE_URL"]  # its canary queue is theirs
    assert set(env) <= {f"CONVEYOR_{name.upper()}" for name in CanarySettings.model_fields}


def test_the_queue_job_creates_the_queue_the_services_use() -> None:
    assert container(QUEUES_JOB)["args"] == ["conveyor", "queues", "create"]
    env = env_of(QUEUES_JOB)
    settings = SqsSettings.model_validate({k.removeprefix("CONVEYOR_").lower(): v for k, v in env.items()})
    queue_url = env_of(PROCESSOR)["CONVEYOR_QUEUE_URL"]
    assert settings.queue_name == queue_url.rsplit("/", 1)[-1]
    assert settings.aws_region == env_of(PROCESSOR)["CONVEYOR_AWS_REGION"]
    assert QUEUES_JOB["spec"]["ttlSecondsAfterFinished"] > 0  # gone later, so the next apply runs it again


def test_the_keda_trigger_reads_the_processors_queue() -> None:
    env = env_of(PROCESSOR)
    assert TRIGGER["type"] == "aws-sqs-queue"
    meta = TRIGGER["metadata"]
    assert meta["queueURL"] == env["CONVEYOR_QUEUE_URL"]
    assert meta["awsRegion"] == env["CONVEYOR_AWS_REGION"]
    url = urlparse(meta["queueURL"])
    assert url.scheme == "https"
    assert url.hostname == f"sqs.{meta['awsRegion']}.amazonaws.com"  # the queue lives in that region
    assert url.path.rsplit("/", 1)[-1] == SqsSettings().queue_name  # the queue Conveyor and the template make
    assert SqsSettings(queue_url=meta["queueURL"]).queue_url is not None  # a URL the services accept
    assert meta["scaleOnInFlight"] == "true"  # a replica's running messages count as its load


def test_the_keda_thresholds_follow_from_the_concurrency() -> None:
    env = env_of(PROCESSOR)
    settings = ProcessorSettings(concurrency=int(env["CONVEYOR_CONCURRENCY"]))
    queue_length = int(TRIGGER["metadata"]["queueLength"])
    activation = int(TRIGGER["metadata"]["activationQueueLength"])
    # one replica is asked to hold no more than it runs at once, and no less than half of it
    assert settings.concurrency // 2 <= queue_length <= settings.concurrency
    assert 0 <= activation < queue_length
    spec = SCALED["spec"]
    assert spec["minReplicaCount"] in (0, 1)
    assert spec["maxReplicaCount"] >= max(spec["minReplicaCount"], 2)
    assert spec["maxReplicaCount"] * (settings.concurrency + settings.prefetch) < SQS_IN_FLIGHT_LIMIT


def test_the_keda_objects_point_at_the_processor_and_its_identity() -> None:
    target = SCALED["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "queue-processor")
    auth = one("TriggerAuthentication", TRIGGER["authenticationRef"]["name"])
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}
    account = one("ServiceAccount", PROCESSOR["spec"]["template"]["spec"]["serviceAccountName"])
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert "replicas" not in PROCESSOR["spec"]  # KEDA owns the count; `kubectl apply` must not reset it
    assert "replicas" not in WRITER["spec"]  # the HPA owns it


def test_termination_grace_covers_the_processors_drain() -> None:
    env = env_of(PROCESSOR)
    grace = ProcessorSettings(shutdown_grace_seconds=float(env["CONVEYOR_SHUTDOWN_GRACE_SECONDS"]))
    pod = PROCESSOR["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace.shutdown_grace_seconds + PROCESSOR_DRAIN_SECONDS
    assert "lifecycle" not in container(PROCESSOR)  # SIGTERM at once: it is behind no Service


def test_termination_grace_covers_the_writers_drain() -> None:
    pod = WRITER["spec"]["template"]["spec"]
    pre_stop = container(WRITER)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 1  # out of the Service's endpoints before SIGTERM
    assert pod["terminationGracePeriodSeconds"] > pre_stop + GRACEFUL_SHUTDOWN_SECONDS


@pytest.mark.parametrize(
    ("deployment", "settings", "port_variable"),
    [(WRITER, WriterSettings, "CONVEYOR_WRITER_PORT"), (PROCESSOR, ProcessorSettings, "CONVEYOR_PROCESSOR_PORT")],
)
def test_variables_exist_and_probes_hit_the_right_paths_and_ports(
    deployment: Doc, settings: type[SqsSettings], port_variable: str
) -> None:
    env = env_of(deployment)
    known = {f"CONVEYOR_{name.upper()}" for name in settings.model_fields} | {PAYLOAD_BUCKET_VARIABLE}
    assert set(env) <= known, set(env) - known
    values = {k.removeprefix("CONVEYOR_").lower(): v for k, v in env.items()}
    # The example's bucket is on purpose no valid bucket name (a forgotten one is refused rather than naming
    # a bucket someone else may own): the rest must be valid as it is, with the name a user sets.
    assert values.pop("payload_bucket") == "conveyor-payloads-CHANGE-ME"
    settings.model_validate(values | {"payload_bucket": "conveyor-payloads-123456789012"})  # valid values
    spec = container(deployment)
    host = env["CONVEYOR_WRITER_HOST" if settings is WriterSettings else "CONVEYOR_PROCESSOR_HOST"]
    assert host == "0.0.0.0"  # noqa: S104 - the pod's address: the kubelet and Prometheus connect to it
    port = int(env[port_variable])
    probes = {name: spec[f"{name}Probe"]["httpGet"] for name in ("startup", "readiness", "liveness")}
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startup": "/healthz", "readiness": "/readyz", "liveness": "/healthz"
    }  # fmt: skip
    assert {port_number(spec, probe["port"]) for probe in probes.values()} == {port}


@pytest.mark.parametrize("workload", [WRITER, PROCESSOR, CANARY, QUEUES_JOB], ids=lambda w: w["metadata"]["name"])
def test_pods_run_locked_down_with_resources(workload: Doc) -> None:
    pod = pod_spec(workload)
    spec = container(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
    }  # fmt: skip
    for kind in ("requests", "limits"):
        assert set(spec["resources"][kind]) == {"cpu", "memory"}
    [mount] = spec["volumeMounts"]
    assert mount["mountPath"] == "/tmp"  # noqa: S108 - an emptyDir: the only writable place


def test_the_ops_port_and_the_writer_are_not_exposed_beyond_the_cluster() -> None:
    services = [doc for _, doc in documents() if doc["kind"] == "Service"]
    processor_labels = PROCESSOR["spec"]["template"]["metadata"]["labels"]
    assert not [s for s in services if matches(s["spec"]["selector"], processor_labels)]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    assert not [doc for _, doc in documents() if doc["kind"] == "Ingress"]


def test_network_policies_let_only_the_gateway_and_prometheus_in() -> None:
    deny = one("NetworkPolicy", "default-deny-ingress")["spec"]
    assert (deny["podSelector"], deny["policyTypes"]) == ({}, ["Ingress"])
    writer = one("NetworkPolicy", "queue-writer")["spec"]
    assert matches(writer["podSelector"]["matchLabels"], WRITER["spec"]["template"]["metadata"]["labels"])
    sources = [peer["podSelector"]["matchLabels"] for rule in writer["ingress"] for peer in rule["from"]]
    canary = CANARY["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert sources == [{"conveyor.io/gateway": "true"}, canary, {"app.kubernetes.io/name": "prometheus"}]
    assert {port["port"] for rule in writer["ingress"] for port in rule["ports"]} == {"http"}
    processor = one("NetworkPolicy", "queue-processor")["spec"]
    assert matches(processor["podSelector"]["matchLabels"], PROCESSOR["spec"]["template"]["metadata"]["labels"])
    [rule] = processor["ingress"]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [{"app.kubernetes.io/name": "prometheus"}]
    assert [port["port"] for port in rule["ports"]] == ["ops"]


def test_prometheus_scrapes_both_services_on_their_metrics_ports() -> None:
    monitor = one("ServiceMonitor", "queue-writer")["spec"]
    service = one("Service", "queue-writer")
    assert matches(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    pods = one("PodMonitor", "queue-processor")["spec"]
    assert matches(pods["selector"]["matchLabels"], PROCESSOR["spec"]["template"]["metadata"]["labels"])
    [endpoint] = pods["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert port_number(container(PROCESSOR), endpoint["port"]) == int(env_of(PROCESSOR)["CONVEYOR_PROCESSOR_PORT"])
    for deployment in (WRITER, PROCESSOR):  # the same, for a Prometheus without the Operator
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) in {p["containerPort"] for p in container(deployment)["ports"]}


def test_network_policies_let_the_canary_and_the_job_out_only_where_they_go() -> None:
    canary = one("NetworkPolicy", "conveyor-canary")["spec"]
    assert canary["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in canary  # nothing comes in
    writer_labels = WRITER["spec"]["template"]["metadata"]["labels"]
    peers = [peer["podSelector"]["matchLabels"] for rule in canary["egress"] for peer in rule.get("to", [])]
    assert writer_labels in peers
    job = one("NetworkPolicy", "conveyor-queues-create")["spec"]
    assert {port["port"] for rule in job["egress"] for port in rule["ports"]} == {53, 443}
    for name in ("queue-writer", "queue-processor"):  # the idempotency store
        egress = one("NetworkPolicy", name)["spec"]["egress"]
        assert 6379 in {port["port"] for rule in egress for port in rule["ports"]}


ACCOUNTS = {"writer": "queue-writer", "processor": "queue-processor", "canary": "queue-canary", "queues": "queue-admin"}


def test_irsa_roles_and_policies_match() -> None:
    iam = K8S / "iam"
    for workload in (WRITER, PROCESSOR, CANARY, QUEUES_JOB):
        assert pod_spec(workload)["serviceAccountName"] in ACCOUNTS.values()
    for name, account_name in ACCOUNTS.items():
        account = one("ServiceAccount", account_name)
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(f"role/conveyor-{name}")
        trust = json.loads((iam / f"{name}-trust-policy.json").read_text())
        subjects = [
            value for statement in trust["Statement"]
            for key, value in statement["Condition"]["StringEquals"].items() if key.endswith(":sub")
        ]  # fmt: skip
        assert f"system:serviceaccount:conveyor:{account_name}" in subjects
    processor_trust = json.loads((iam / "processor-trust-policy.json").read_text())
    assert "system:serviceaccount:keda:keda-operator" in json.dumps(processor_trust)  # identityOwner: workload


def test_the_canary_and_the_job_touch_only_their_queues() -> None:
    iam = K8S / "iam"
    queue = env_of(PROCESSOR)["CONVEYOR_QUEUE_URL"].rsplit("/", 1)[-1]
    canary = json.loads((iam / "canary-policy.json").read_text())
    assert [s["Resource"].rsplit(":", 1)[-1] for s in canary["Statement"]] == [f"{queue}-canary"]
    assert not [a for s in canary["Statement"] for a in s["Action"] if a == "sqs:SendMessage"]  # only processors send
    processor = json.loads((iam / "processor-policy.json").read_text())
    [replies] = [s for s in processor["Statement"] if s["Resource"].endswith(f"{queue}-canary")]
    assert sorted(replies["Action"]) == ["sqs:GetQueueUrl", "sqs:SendMessage"]
    [create] = json.loads((iam / "queues-policy.json").read_text())["Statement"]
    assert sorted(r.rsplit(":", 1)[-1] for r in create["Resource"]) == sorted(
        [queue, f"{queue}-canary", f"{queue}-dlq"]
    )
    assert "sqs:DeleteQueue" not in create["Action"]


def _payload_grants(name: str) -> tuple[set[str], set[str]]:
    """The S3 actions of iam/<name>-policy.json, and the resources they are granted on."""
    policy = json.loads((K8S / "iam" / f"{name}-policy.json").read_text())
    statements = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
    assert all(s["Effect"] == "Allow" and isinstance(s["Resource"], str) for s in statements)
    return {a for s in statements for a in s["Action"]}, {s["Resource"] for s in statements}


def test_the_writer_and_the_processor_get_the_payload_bucket_and_its_objects_only() -> None:
    bucket = env_of(WRITER)[PAYLOAD_BUCKET_VARIABLE]
    assert bucket == env_of(PROCESSOR)[PAYLOAD_BUCKET_VARIABLE] == "conveyor-payloads-CHANGE-ME"  # set once
    for workload in (CANARY, QUEUES_JOB):  # neither touches S3
        assert PAYLOAD_BUCKET_VARIABLE not in env_of(workload)
    writer_actions, writer_resources = _payload_grants("writer")
    processor_actions, processor_resources = _payload_grants("processor")
    assert writer_actions == {"s3:PutObject", "s3:DeleteObject"}  # store, remove when the send fails
    assert processor_actions == {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}  # fetch, delete once handled
    assert writer_resources == {f"arn:aws:s3:::{bucket}/*"}  # its objects, nothing else
    # ListBucket on the bucket itself (a missing key is then 404 NoSuchKey, not 403), the rest on its objects
    assert processor_resources == {f"arn:aws:s3:::{bucket}/*", f"arn:aws:s3:::{bucket}"}
    assert _payload_grants("canary") == _payload_grants("queues") == (set(), set())
