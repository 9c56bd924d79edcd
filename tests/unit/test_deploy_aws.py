"""deploy/aws/conveyor.yaml beyond what cfn-lint checks: the writer is private behind API Gateway,
stop timeouts cover the drains, settings names exist, and the IAM policies are the same on ECS and
on EKS (deploy/kubernetes/iam)."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import pytest
import yaml

from conveyor.settings import ProcessorSettings, WriterSettings
from conveyor.writer.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.unit.deploy_support import IMAGE_UID, PROCESSOR_DRAIN_SECONDS, ROOT

TEMPLATE = ROOT / "deploy" / "aws" / "conveyor.yaml"
IAM = ROOT / "deploy" / "kubernetes" / "iam"

Doc = dict[str, Any]


class CfnLoader(yaml.SafeLoader):
    """CloudFormation's short forms (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Doc:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: object = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def _template() -> Doc:
    loaded: Doc = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 - a SafeLoader, plus intrinsics
    return loaded


def template() -> Doc:
    """The parsed template (a fresh copy: a test may not change what another reads)."""
    return copy.deepcopy(_template())


def resources() -> dict[str, Doc]:
    found: dict[str, Doc] = template()["Resources"]
    return found


def of_type(kind: str) -> dict[str, Doc]:
    return {name: r["Properties"] for name, r in resources().items() if r["Type"] == kind}


def container(task: str) -> Doc:
    [definition] = resources()[task]["Properties"]["ContainerDefinitions"]
    found: Doc = definition
    return found


def environment(task: str) -> dict[str, object]:
    return {item["Name"]: item["Value"] for item in container(task)["Environment"]}


def ingress_sources(group: str) -> list[object]:
    rules = resources()[group]["Properties"].get("SecurityGroupIngress", [])
    return [rule.get("SourceSecurityGroupId", rule.get("CidrIp")) for rule in rules]


def test_the_writer_is_reached_only_through_api_gateway() -> None:
    # API Gateway -> VPC link -> internal load balancer -> writer: each admits only the hop before it
    for method in ("PostMessages", "PostBatch"):
        integration = resources()[method]["Properties"]["Integration"]
        assert integration["ConnectionType"] == "VPC_LINK"
        assert integration["ConnectionId"] == {"Ref": "VpcLink"}
        assert integration["IntegrationTarget"] == {"Ref": "WriterLoadBalancer"}
        assert resources()[method]["Properties"]["ApiKeyRequired"] is True
    assert resources()["VpcLink"]["Properties"]["SecurityGroupIds"] == [{"Ref": "VpcLinkSecurityGroup"}]
    balancer = resources()["WriterLoadBalancer"]["Properties"]
    assert balancer["Scheme"] == "internal"
    assert balancer["SecurityGroups"] == [{"Ref": "LoadBalancerSecurityGroup"}]
    assert ingress_sources("LoadBalancerSecurityGroup") == [{"Ref": "VpcLinkSecurityGroup"}]
    assert ingress_sources("WriterSecurityGroup") == [{"Ref": "LoadBalancerSecurityGroup"}]
    assert ingress_sources("ProcessorSecurityGroup") == []  # the ops port stays closed
    assert not [r for r in of_type("AWS::EC2::SecurityGroupIngress").values()]  # no rule added elsewhere
    assert "WriterUrl" not in template()["Parameters"]


def test_the_load_balancer_forwards_only_the_public_routes() -> None:
    [listener] = of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    [default] = listener["DefaultActions"]
    assert (default["Type"], default["FixedResponseConfig"]["StatusCode"]) == ("fixed-response", "404")
    [rule] = of_type("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    conditions = {c["Field"]: c for c in rule["Conditions"]}
    assert conditions["path-pattern"]["PathPatternConfig"]["Values"] == ["/messages", "/messages/batch"]
    assert conditions["http-request-method"]["HttpRequestMethodConfig"]["Values"] == ["POST"]


@pytest.mark.parametrize("service", ["WriterService", "ProcessorService"])
def test_services_run_in_private_subnets_without_public_addresses(service: str) -> None:
    network = resources()[service]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}


@pytest.mark.parametrize("task", ["WriterTaskDefinition", "ProcessorTaskDefinition"])
def test_containers_run_locked_down(task: str) -> None:
    definition = container(task)
    assert definition["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert definition["ReadonlyRootFilesystem"] is True
    assert "/healthz" in " ".join(definition["HealthCheck"]["Command"])


def test_stop_timeouts_cover_the_drains() -> None:
    writer = container("WriterTaskDefinition")
    assert writer["StopTimeout"] > GRACEFUL_SHUTDOWN_SECONDS
    processor = container("ProcessorTaskDefinition")
    grace = float(str(environment("ProcessorTaskDefinition")["CONVEYOR_SHUTDOWN_GRACE_SECONDS"]))
    assert processor["StopTimeout"] > grace + PROCESSOR_DRAIN_SECONDS
    [group] = of_type("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    delay = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}["deregistration_delay.timeout_seconds"]
    timeouts = {m["Integration"]["TimeoutInMillis"] for m in of_type("AWS::ApiGateway::Method").values()}
    assert int(delay) * 1000 >= max(timeouts)  # a request API Gateway still waits for is not cut off


@pytest.mark.parametrize(
    ("task", "settings"),
    [("WriterTaskDefinition", WriterSettings), ("ProcessorTaskDefinition", ProcessorSettings)],
)
def test_environment_names_exist(task: str, settings: type[WriterSettings | ProcessorSettings]) -> None:
    names = set(environment(task))
    assert names <= {f"CONVEYOR_{field.upper()}" for field in settings.model_fields}, names
    assert environment(task)["CONVEYOR_QUEUE_URL"] == {"Ref": "Queue"}


def test_the_processors_visibility_timeout_is_the_queues() -> None:
    visibility = environment("ProcessorTaskDefinition")["CONVEYOR_VISIBILITY_TIMEOUT_SECONDS"]
    assert visibility == {"Ref": "VisibilityTimeoutSeconds"}
    assert resources()["Queue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}


def _actions(policy: Doc) -> list[list[str]]:
    return sorted(sorted(statement["Action"]) for statement in policy["Statement"])


@pytest.mark.parametrize(("role", "name"), [("WriterRole", "writer"), ("ProcessorRole", "processor")])
def test_eks_policies_grant_what_the_ecs_roles_grant(role: str, name: str) -> None:
    [policy] = resources()[role]["Properties"]["Policies"]
    ecs = policy["PolicyDocument"]
    eks = json.loads((IAM / f"{name}-policy.json").read_text())
    assert _actions(eks) == _actions(ecs)
    assert all(s["Resource"].startswith("arn:aws:sqs:") and "*" not in s["Resource"] for s in eks["Statement"])
