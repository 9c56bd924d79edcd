"""deploy/aws/conveyor.yaml beyond what cfn-lint checks: the writer is private behind API Gateway,
which names the client; stop timeouts cover the drains; settings names exist; the idempotency store,
the canary, autoscaling and the bucket of large payloads are wired; and the IAM policies are least
privilege and the same on ECS and on EKS (deploy/kubernetes/iam)."""

from __future__ import annotations

import copy
import json
import math
import re
from functools import cache
from typing import Any

import pytest
import yaml

from conveyor.settings import CanarySettings, ProcessorSettings, WriterSettings
from conveyor.writer.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.unit.deploy_support import IMAGE_UID, PAYLOAD_BUCKET_VARIABLE, PROCESSOR_DRAIN_SECONDS, ROOT

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


def environment(task: str, *, with_app: bool = False) -> dict[str, object]:
    """The container's variables, as the stack makes them with or without the App parameter."""
    items = []
    for entry in container(task)["Environment"]:
        item = entry
        if "Fn::If" in entry:
            condition, present, absent = entry["Fn::If"]
            assert condition == "HasApp"
            item = present if with_app else absent
            if item == {"Ref": "AWS::NoValue"}:
                continue
        items.append(item)
    return {item["Name"]: item["Value"] for item in items}


@pytest.mark.parametrize("with_app", [True, False])
def test_the_app_goes_to_both_services_and_replaces_the_handler(with_app: bool) -> None:
    writer = environment("WriterTaskDefinition", with_app=with_app)
    processor = environment("ProcessorTaskDefinition", with_app=with_app)
    if with_app:
        assert writer["CONVEYOR_APP"] == processor["CONVEYOR_APP"] == {"Ref": "App"}
        assert "CONVEYOR_HANDLER" not in processor  # both set would stop the processor at start-up
    else:
        assert "CONVEYOR_APP" not in writer
        assert "CONVEYOR_APP" not in processor
        assert processor["CONVEYOR_HANDLER"] == {"Ref": "Handler"}


def secrets(task: str, *, with_store: bool = True) -> dict[str, object]:
    """The container's `Secrets` by name, as the stack makes them with or without an idempotency store."""
    found = container(task).get("Secrets", [])
    if "Fn::If" in found:  # the whole list depends on the condition
        found = found["Fn::If"][1] if with_store else []
    items = []
    for item in found:
        if "Fn::If" in item:
            condition, present, _ = item["Fn::If"]
            assert condition == "HasIdempotencyStore"
            if with_store:
                items.append(present)
        else:
            items.append(item)
    return {item["Name"]: item["ValueFrom"] for item in items}


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
    names = set(environment(task)) | set(secrets(task))
    assert names <= {f"CONVEYOR_{field.upper()}" for field in settings.model_fields} | {PAYLOAD_BUCKET_VARIABLE}, names
    assert environment(task)["CONVEYOR_QUEUE_URL"] == {"Ref": "Queue"}


def test_the_processors_visibility_timeout_is_the_queues() -> None:
    visibility = environment("ProcessorTaskDefinition")["CONVEYOR_VISIBILITY_TIMEOUT_SECONDS"]
    assert visibility == {"Ref": "VisibilityTimeoutSeconds"}
    assert resources()["Queue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutSeconds"}


def _actions(policy: Doc) -> list[list[str]]:
    return sorted(sorted(statement["Action"]) for statement in policy["Statement"])


@pytest.mark.parametrize(
    ("role", "name"), [("WriterRole", "writer"), ("ProcessorRole", "processor"), ("CanaryRole", "canary")]
)
def test_eks_policies_grant_what_the_ecs_roles_grant(role: str, name: str) -> None:
    [policy] = resources()[role]["Properties"]["Policies"]
    ecs = policy["PolicyDocument"]
    eks = json.loads((IAM / f"{name}-policy.json").read_text())
    assert _actions(eks) == _actions(ecs)
    for statement in eks["Statement"]:
        resource = statement["Resource"]
        if statement["Action"] == ["s3:ListBucket"]:  # one bucket (a missing key is then a 404), never all
            assert re.fullmatch(r"arn:aws:s3:::[a-z0-9A-Z-]+", resource), resource
        elif resource.startswith("arn:aws:s3:::"):  # the objects of one bucket, never the bucket or all buckets
            bucket, objects = resource.removeprefix("arn:aws:s3:::").split("/")
            assert (objects, "*" in bucket) == ("*", False), resource
        else:
            assert resource.startswith("arn:aws:sqs:"), resource
            assert "*" not in resource, resource


def test_api_gateway_names_the_client_by_its_api_key() -> None:
    for method in ("PostMessages", "PostBatch"):
        mapping = resources()[method]["Properties"]["Integration"]["RequestParameters"]
        # the key's id, not its value (a secret the writer would otherwise store in every idempotency key)
        assert mapping["integration.request.header.X-Conveyor-Client"] == "context.identity.apiKeyId"
        assert mapping["integration.request.header.X-Request-ID"] == "context.requestId"


def test_the_idempotency_store_is_an_existing_redis_url_from_secrets_manager() -> None:
    parameter = template()["Parameters"]["IdempotencyStoreSecretArn"]
    assert parameter["Default"] == ""  # optional: without it, replays are off
    assert template()["Conditions"]["HasIdempotencyStore"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "IdempotencyStoreSecretArn"}, ""]}]
    }  # fmt: skip
    for task in ("WriterTaskDefinition", "ProcessorTaskDefinition"):
        assert secrets(task)["CONVEYOR_IDEMPOTENCY_STORE"] == {"Ref": "IdempotencyStoreSecretArn"}
        assert "CONVEYOR_IDEMPOTENCY_STORE" not in secrets(task, with_store=False)
    egress = {name: r for name, r in resources().items() if r["Type"] == "AWS::EC2::SecurityGroupEgress"}
    assert {r["Properties"]["GroupId"]["Ref"] for r in egress.values()} == {
        "WriterSecurityGroup",
        "ProcessorSecurityGroup",
    }
    for rule in egress.values():
        assert rule["Condition"] == "HasIdempotencyStore"
        assert rule["Properties"]["FromPort"] == rule["Properties"]["ToPort"] == {"Ref": "IdempotencyStorePort"}


def test_ecs_reads_only_the_stacks_secrets() -> None:
    [policy] = resources()["ExecutionRole"]["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == [
        {"Ref": "CanarySecret"}, {"Ref": "CanaryApiKeySecret"},
        {"Fn::If": ["HasIdempotencyStore", {"Ref": "IdempotencyStoreSecretArn"}, {"Ref": "AWS::NoValue"}]},
    ]  # fmt: skip
    used = {str(value) for task in of_type("AWS::ECS::TaskDefinition") for value in secrets(task).values()}
    assert used == {str(resource) for resource in statement["Resource"][:2]} | {
        str({"Ref": "IdempotencyStoreSecretArn"})
    }


def test_the_canary_runs_every_minute_through_the_public_api_with_the_processors_secret() -> None:
    queue = resources()["CanaryQueue"]["Properties"]
    assert queue["QueueName"] == {"Fn::Sub": "${QueueName}-canary"}  # where the processors reply
    assert queue["MessageRetentionPeriod"] == 600  # as `conveyor queues create` makes it
    schedule = resources()["CanarySchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["Cluster", "Arn"]}
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "CanaryTaskDefinition"}
    network = target["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert ingress_sources("CanarySecurityGroup") == []
    canary = container("CanaryTaskDefinition")
    assert canary["Command"][:3] == ["conveyor", "canary", "--once"]
    assert canary["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert canary["ReadonlyRootFilesystem"] is True
    env = environment("CanaryTaskDefinition")
    assert env["CONVEYOR_CANARY_URL"] == template()["Outputs"]["ApiUrl"]["Value"]  # API key, gateway and all
    assert env["CONVEYOR_QUEUE_URL"] == {"Ref": "Queue"}
    names = set(env) | set(secrets("CanaryTaskDefinition"))
    assert names <= {f"CONVEYOR_{field.upper()}" for field in CanarySettings.model_fields}, names
    shared = secrets("CanaryTaskDefinition")["CONVEYOR_CANARY_SECRET"]
    assert shared == secrets("ProcessorTaskDefinition")["CONVEYOR_CANARY_SECRET"] == {"Ref": "CanarySecret"}
    assert secrets("CanaryTaskDefinition")["CONVEYOR_CANARY_API_KEY"] == {"Ref": "CanaryApiKeySecret"}
    key = resources()["CanaryClientKey"]["Properties"]
    assert key["Value"] == {"Fn::Sub": "{{resolve:secretsmanager:${CanaryApiKeySecret}:SecretString}}"}
    in_plan = [r for r in of_type("AWS::ApiGateway::UsagePlanKey").values() if r["KeyId"] == {"Ref": "CanaryClientKey"}]
    assert len(in_plan) == 1
    alarm = resources()["CanaryFailingAlarm"]["Properties"]
    assert alarm["TreatMissingData"] == "breaching"  # a canary that does not run is failing
    [metric] = resources()["CanarySuccessMetric"]["Properties"]["MetricTransformations"]
    assert (metric["MetricNamespace"], metric["MetricName"]) == (alarm["Namespace"], alarm["MetricName"])


def test_the_scheduler_may_only_start_the_canary() -> None:
    [policy] = resources()["CanarySchedulerRole"]["Properties"]["Policies"]
    run, passing = policy["PolicyDocument"]["Statement"]
    assert (run["Action"], run["Resource"]) == ("ecs:RunTask", {"Ref": "CanaryTaskDefinition"})
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}}
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == [{"Fn::GetAtt": ["ExecutionRole", "Arn"]}, {"Fn::GetAtt": ["CanaryRole", "Arn"]}]
    [canary] = resources()["CanaryRole"]["Properties"]["Policies"]
    [statement] = canary["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Fn::GetAtt": ["CanaryQueue", "Arn"]}  # nothing on the main queue
    replies = [
        s for s in resources()["ProcessorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s["Resource"] == {"Fn::GetAtt": ["CanaryQueue", "Arn"]}
    ]  # fmt: skip
    assert [sorted(s["Action"]) for s in replies] == [["sqs:GetQueueUrl", "sqs:SendMessage"]]


def _scaling(target: str) -> Doc:
    [policy] = [
        p
        for p in of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["ScalingTargetId"] == {"Ref": target}
    ]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    found: Doc = policy["TargetTrackingScalingPolicyConfiguration"]
    return found


@pytest.mark.parametrize(
    ("target", "service", "minimum", "maximum"),
    [
        ("WriterScalableTarget", "WriterService", "WriterTasks", "WriterMaxTasks"),
        ("ProcessorScalableTarget", "ProcessorService", "ProcessorTasks", "ProcessorMaxTasks"),
    ],
)
def test_both_services_scale_between_their_bounds(target: str, service: str, minimum: str, maximum: str) -> None:
    scalable = resources()[target]["Properties"]
    assert scalable["ResourceId"] == {"Fn::Sub": f"service/${{Cluster}}/${{{service}.Name}}"}
    assert (scalable["ServiceNamespace"], scalable["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert (scalable["MinCapacity"], scalable["MaxCapacity"]) == ({"Ref": minimum}, {"Ref": maximum})
    assert "DesiredCount" not in resources()[service]["Properties"]  # autoscaling owns it; an update keeps it


def test_the_writer_scales_on_cpu() -> None:
    config = _scaling("WriterScalableTarget")
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert 50 <= config["TargetValue"] <= 80


def test_the_processor_scales_on_its_backlog_per_running_task() -> None:
    config = _scaling("ProcessorScalableTarget")
    assert config["TargetValue"] == {"Ref": "ProcessorBacklogPerTask"}
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    visible = metrics["visible"]["MetricStat"]["Metric"]
    assert (visible["Namespace"], visible["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert visible["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
    tasks = metrics["tasks"]["MetricStat"]["Metric"]
    assert (tasks["Namespace"], tasks["MetricName"]) == ("ECS/ContainerInsights", "RunningTaskCount")
    assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": ["ProcessorService", "Name"]}} in tasks["Dimensions"]
    [returned] = [m for m in metrics.values() if m["ReturnData"]]
    assert returned["Expression"] == "IF(tasks > 0, visible / tasks, visible)"
    cluster = resources()["Cluster"]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster  # RunningTaskCount comes from it


DAY_SECONDS = 86_400
PAYLOAD_OBJECTS = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${PayloadBucket}/*"}
PAYLOAD_BUCKET_ARN = {"Fn::GetAtt": ["PayloadBucket", "Arn"]}


def test_the_payload_bucket_is_encrypted_private_and_tls_only() -> None:
    [(name, bucket)] = of_type("AWS::S3::Bucket").items()
    assert name == "PayloadBucket"
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    blocks = bucket["PublicAccessBlockConfiguration"]
    assert blocks == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [policy] = of_type("AWS::S3::BucketPolicy").values()
    assert policy["Bucket"] == {"Ref": "PayloadBucket"}
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Resource"] == [{"Fn::GetAtt": ["PayloadBucket", "Arn"]}, {"Fn::Sub": "${PayloadBucket.Arn}/*"}]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert template()["Outputs"]["PayloadBucketName"]["Value"] == {"Ref": "PayloadBucket"}


def test_payloads_outlive_the_retentions_of_a_pointer_by_a_day() -> None:
    # dead-lettered messages keep their pointer, and the processor's copy is a new message in the DLQ:
    # an object must outlast the queue's retention and then the DLQ's
    retentions = [resources()[queue]["Properties"]["MessageRetentionPeriod"] for queue in ("Queue", "DeadLetterQueue")]
    redrive = resources()["Queue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    rules = resources()["PayloadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" and "Prefix" not in rule and "Filter" not in rule for rule in rules)
    [expiry] = [rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule]
    assert expiry == math.ceil(sum(retentions) / DAY_SECONDS) + 1
    [aborted] = [rule["AbortIncompleteMultipartUpload"] for rule in rules if "AbortIncompleteMultipartUpload" in rule]
    assert aborted == {"DaysAfterInitiation": 1}


def _payload_actions(role: str) -> set[str]:
    """The role's S3 actions, each statement on the bucket's objects only."""
    [policy] = resources()[role]["Properties"]["Policies"]
    actions: set[str] = set()
    for statement in policy["PolicyDocument"]["Statement"]:
        names = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        if any(name.startswith("s3:") for name in names):
            assert statement["Effect"] == "Allow"
            # not "*", not another bucket; ListBucket (a missing key is then 404, not 403) on the bucket itself
            expected = PAYLOAD_BUCKET_ARN if names == ["s3:ListBucket"] else PAYLOAD_OBJECTS
            assert statement["Resource"] == expected, statement
            assert all(name.startswith("s3:") for name in names)
            actions |= set(names)
    return actions


def test_the_writer_stores_payloads_and_the_processor_reads_them() -> None:
    assert _payload_actions("WriterRole") == {"s3:PutObject", "s3:DeleteObject"}  # never reads one
    assert _payload_actions("ProcessorRole") == {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}  # never stores
    assert _payload_actions("CanaryRole") == set()
    for name, role in of_type("AWS::IAM::Role").items():
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert "s3:*" not in statement["Action"], name
                if name not in ("WriterRole", "ProcessorRole"):
                    assert "PayloadBucket" not in json.dumps(statement), name


@pytest.mark.parametrize("with_app", [True, False])
def test_both_services_are_given_the_payload_bucket(with_app: bool) -> None:
    for task in ("WriterTaskDefinition", "ProcessorTaskDefinition"):
        assert environment(task, with_app=with_app)[PAYLOAD_BUCKET_VARIABLE] == {"Ref": "PayloadBucket"}
    assert PAYLOAD_BUCKET_VARIABLE not in environment("CanaryTaskDefinition")
