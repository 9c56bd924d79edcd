"""deploy/kubernetes: core objects against the Kubernetes schemas (offline), and what no schema knows:
the KEDA objects against the queue and the processor they scale, shutdown times against the services'
drains, probes, settings names, exposure and security settings."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from conveyor.settings import ProcessorSettings, SqsSettings, WriterSettings
from conveyor.writer.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.unit.deploy_support import IMAGE_UID, PROCESSOR_DRAIN_SECONDS, ROOT, SQS_IN_FLIGHT_LIMIT

K8S = ROOT / "deploy" / "kubernetes"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PodMonitor"}
SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())  # oldest supported (preStop sleep), newest

Doc = dict[str, Any]


@cache
def _parsed() -> tuple[tuple[str, Doc], ...]:
    return tuple(
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    )  # fmt: skip


def documents() -> Iterator[tuple[str, Doc]]:
    """Every object of every manifest (fresh copies: a test may not change what another reads)."""
    for name, doc in _parsed():
        yield name, copy.deepcopy(doc)


def one(kind: str, name: str) -> Doc:
    found: list[Doc] = [doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: Doc) -> dict[str, str]:
    """The container's CONVEYOR_* variables: the ConfigMaps it reads, then its own `env`."""
    spec = container(deployment)
    values: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        values |= one("ConfigMap", source["configMapRef"]["name"])["data"]
    return values | {item["name"]: item["value"] for item in spec.get("env", [])}


def port_number(spec: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in spec["ports"] if p["name"] == port]
    return int(number)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


WRITER = one("Deployment", "queue-writer")
PROCESSOR = one("Deployment", "queue-processor")
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
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceAccount"} <= kinds


def test_every_manifest_is_in_the_kustomization_and_in_the_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "conveyor"
    for _, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "conveyor", doc["metadata"]["name"]
    images = {container(d)["image"] for d in (WRITER, PROCESSOR)}
    assert images == {image["name"] for image in kustomization["images"]}


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
    known = {f"CONVEYOR_{name.upper()}" for name in settings.model_fields}
    assert set(env) <= known, set(env) - known
    settings.model_validate({k.removeprefix("CONVEYOR_").lower(): v for k, v in env.items()})  # valid values
    spec = container(deployment)
    host = env["CONVEYOR_WRITER_HOST" if settings is WriterSettings else "CONVEYOR_PROCESSOR_HOST"]
    assert host == "0.0.0.0"  # noqa: S104 - the pod's address: the kubelet and Prometheus connect to it
    port = int(env[port_variable])
    probes = {name: spec[f"{name}Probe"]["httpGet"] for name in ("startup", "readiness", "liveness")}
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startup": "/healthz", "readiness": "/readyz", "liveness": "/healthz"
    }  # fmt: skip
    assert {port_number(spec, probe["port"]) for probe in probes.values()} == {port}


@pytest.mark.parametrize("deployment", [WRITER, PROCESSOR])
def test_pods_run_locked_down_with_resources(deployment: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    spec = container(deployment)
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
    assert sources == [{"conveyor.io/gateway": "true"}, {"app.kubernetes.io/name": "prometheus"}]
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


def test_irsa_roles_and_policies_match() -> None:
    iam = K8S / "iam"
    for name in ("writer", "processor"):
        account = one("ServiceAccount", f"queue-{name}")
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(f"role/conveyor-{name}")
        trust = json.loads((iam / f"{name}-trust-policy.json").read_text())
        subjects = [
            value for statement in trust["Statement"]
            for key, value in statement["Condition"]["StringEquals"].items() if key.endswith(":sub")
        ]  # fmt: skip
        assert f"system:serviceaccount:conveyor:queue-{name}" in subjects
    processor_trust = json.loads((iam / "processor-trust-policy.json").read_text())
    assert "system:serviceaccount:keda:keda-operator" in json.dumps(processor_trust)  # identityOwner: workload
