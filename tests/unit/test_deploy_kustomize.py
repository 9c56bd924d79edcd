"""deploy/kubernetes's layout, without kubectl: the base lists every manifest it has, the example
overlay builds on it and is where every value to change lives (and nothing else changes), and the
secrets stay out of git. test_deploy_kubernetes.py checks the rendered result where kubectl exists."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.unit.deploy_support import ROOT

K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
# What a user sets, and only that: their image, the queue URL, the payload bucket, their app, the IRSA
# roles, the secrets.
INPUTS = (
    re.compile(r"^\s+newName: \S+$"),
    re.compile(r"^\s+newTag: \S+$"),
    re.compile(r"^\s+- CONVEYOR_QUEUE_URL=https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[A-Za-z0-9_-]+$"),
    re.compile(r"^\s+- CONVEYOR_PAYLOAD_BUCKET=[A-Za-z0-9.-]+$"),
    re.compile(r"^\s+value: [a-z_.]+:[a-z_]+$"),  # CONVEYOR_APP
    re.compile(
        r"^\s+eks\.amazonaws\.com/role-arn: arn:aws:iam::\d{12}:role/conveyor-(writer|processor|canary|queues)$"
    ),
)
SECRETS = {"CONVEYOR_IDEMPOTENCY_STORE", "CONVEYOR_CANARY_SECRET"}


def _kustomization(folder: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / folder / "kustomization.yaml").read_text())
    return loaded


def test_the_base_lists_every_manifest_it_has() -> None:
    base = _kustomization("base")
    files = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(base["resources"]) == files
    assert base["namespace"] == "conveyor"


def test_the_overlay_builds_on_the_base_and_names_the_image_the_base_runs() -> None:
    overlay = _kustomization("overlays/example")
    assert overlay["resources"] == ["../../base"]
    [image] = overlay["images"]
    assert image["name"] == "conveyor"
    used = set(re.findall(r"^\s+image: (\S+)$", "".join(p.read_text() for p in BASE.glob("*.yaml")), re.MULTILINE))
    assert used == {"conveyor"}  # every container of the base is replaced by the overlay's image
    [secret] = overlay["secretGenerator"]
    assert secret["envs"] == ["secret.env"]
    assert (OVERLAY / ".gitignore").read_text().split() == ["secret.env"]  # the real one stays out of git
    example = (OVERLAY / "secret.env.example").read_text()
    assert {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")} == SECRETS


def test_change_me_marks_the_overlays_inputs_and_nothing_else() -> None:
    for path in BASE.rglob("*"):
        if path.is_file():
            assert "CHANGE ME" not in path.read_text(), path  # the base is the same for everyone
    marked = [line.split("  # CHANGE ME")[0] for line in (OVERLAY / "kustomization.yaml").read_text().splitlines()
              if "# CHANGE ME" in line]  # fmt: skip
    # image name and tag, queue URL, payload bucket, the app in both services, four roles
    assert len(marked) == 2 + 1 + 1 + 2 + 4, marked
    for line in marked:
        assert any(pattern.match(line) for pattern in INPUTS), line
    example = (OVERLAY / "secret.env.example").read_text()
    assert all("CHANGE-ME" in line for line in example.splitlines() if line.startswith(tuple(SECRETS)))


def test_the_base_leaves_large_payloads_off_and_the_overlay_names_the_bucket_once() -> None:
    configs = [d for d in yaml.safe_load_all((BASE / "config.yaml").read_text()) if d["kind"] == "ConfigMap"]
    [payloads] = [d for d in configs if "CONVEYOR_PAYLOAD_BUCKET" in d["data"]]
    assert payloads["data"] == {"CONVEYOR_PAYLOAD_BUCKET": ""}  # empty: off, a too-large message is a 413
    for name in ("writer.yaml", "processor.yaml"):
        [deployment] = [d for d in yaml.safe_load_all((BASE / name).read_text()) if d["kind"] == "Deployment"]
        [spec] = deployment["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": payloads["metadata"]["name"]}} in spec["envFrom"], name
    [generator] = [
        g for g in _kustomization("overlays/example")["configMapGenerator"] if g["name"] == "conveyor-payloads"
    ]
    assert generator["behavior"] == "merge"
    [literal] = generator["literals"]
    assert literal.split("=", 1)[0] == "CONVEYOR_PAYLOAD_BUCKET"
    assert literal.split("=", 1)[1]  # the example sets one
