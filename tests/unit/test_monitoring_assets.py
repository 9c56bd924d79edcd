"""The monitoring assets operators import: deploy/grafana/conveyor.json and the alert rules
(deploy/prometheus/conveyor.rules.yaml, its promtool tests and its PrometheusRule copy). A dashboard
or an alert on a metric nobody exports shows nothing and never fires, so every metric name they use
is checked against the exposition the services really render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import yaml
from prometheus_client import generate_latest

from conveyor.canary.metrics import CanaryMetrics
from conveyor.processor.engine.canary_reply import CanaryConfig, CanaryResponder
from conveyor.processor.metrics import ProcessorMetrics
from conveyor.writer.metrics import WriterMetrics
from tests.unit.deploy_support import ROOT

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DASHBOARD = ROOT / "deploy" / "grafana" / "conveyor.json"
RULES = ROOT / "deploy" / "prometheus" / "conveyor.rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "conveyor.rules.test.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"
# Not Conveyor's: SQS's own figures, which only CloudWatch has, under the CloudWatch exporter's names
# (the rules file's header says so). Listed one by one so that a typo in them still fails.
EXTERNAL = frozenset(
    {"aws_sqs_approximate_number_of_messages_visible_maximum", "aws_sqs_approximate_age_of_oldest_message_maximum"}
)
# A metric name in PromQL: an identifier before a selector, a range, a closing parenthesis, a comma
# or the end. Conveyor's own start with conveyor_; the external ones are matched by name.
NAME = re.compile(r"\b((?:conveyor|aws)_[a-zA-Z0-9_]+)(?=\s*[{\[),]|\s|$)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
DATASOURCE = "${datasource}"

Doc = dict[str, Any]


def exposition_names(text: str) -> set[str]:
    """Every sample name the text exposition can carry: its samples, and for each family what its
    type adds (prometheus-client names a counter family with _total already; histograms add
    _bucket, _sum and _count), so that a family with no sample yet (labelled, never used) counts."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            names.update(family.removesuffix(suffix) + suffix for suffix in SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


@cache
def exported() -> frozenset[str]:
    """What the writer, the processor (with canary replies on, as with CONVEYOR_CANARY_SECRET) and
    the continuous canary export, built the way the services build their registries."""
    processor = ProcessorMetrics()
    config = CanaryConfig(b"s" * 16, "https://sqs.example/q-canary", "test")
    CanaryResponder(cast("SQSClient", None), config, processor.registry)  # registers on creation
    names: set[str] = set()
    for registry in (processor.registry, WriterMetrics().registry, CanaryMetrics().registry):
        names |= exposition_names(generate_latest(registry).decode())
    return frozenset(names)


def unknown(expressions: list[str]) -> set[str]:
    used = {name for expr in expressions for name in NAME.findall(expr)}
    assert used, "no metric name found: the pattern no longer matches the expressions"
    return {name for name in used if name not in EXTERNAL and name not in exported()}


def dashboard() -> Doc:
    loaded: Doc = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[Doc]:
    """Every panel, those inside collapsed rows included."""
    found: list[Doc] = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def rule_groups() -> list[Doc]:
    groups: list[Doc] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> list[Doc]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def dashboard_expressions() -> list[str]:
    exprs = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        exprs += [query["query"]] if isinstance(query, dict) else []
    return exprs


def test_the_exposition_parser_applies_the_suffix_rules() -> None:
    names = exported()
    assert {"conveyor_processor_received_total", "conveyor_writer_batch_wait_seconds_bucket"} <= names
    assert {"conveyor_processor_canaries_total", "conveyor_canary_up", "conveyor_sqs_requests_total"} <= names
    assert "conveyor_processor_received" not in names  # the family's name without _total is not a series
    # and a name nobody exports is reported, wherever it stands in an expression
    assert unknown(["sum(rate(conveyor_nope_total[5m]))", "label_values(conveyor_gone, job)"]) == {
        "conveyor_nope_total",
        "conveyor_gone",
    }


def test_the_dashboard_uses_only_metrics_the_services_export() -> None:
    assert unknown(dashboard_expressions()) == set()


def test_the_alert_rules_use_only_metrics_the_services_export_or_the_listed_external_ones() -> None:
    exprs = [str(rule["expr"]) for group in rule_groups() for rule in group["rules"]]
    assert unknown(exprs) == set()
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used & EXTERNAL == EXTERNAL  # an allowed name no rule needs any more must leave the list


def test_the_new_error_type_metrics_are_exported_and_charted() -> None:
    # the failures by error type are what an operator filters on first: they must be on the dashboard
    exprs = " ".join(dashboard_expressions())
    assert "conveyor_processor_failed_total" in exported()
    assert re.search(r"by \(error_type\) \(rate\(conveyor_processor_failed_total", exprs)
    assert re.search(r"by \(error_type, reason\) \(rate\(conveyor_processor_dead_lettered_total", exprs)


def test_every_panel_has_a_title_and_queries_the_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    [variable] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels():
        assert panel.get("title"), panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_prometheus_rule_carries_exactly_the_rules_files_groups() -> None:
    rule: Doc = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "conveyor"
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "conveyor"
    assert rule["spec"]["groups"] == rule_groups()


def test_every_alert_is_labelled_explained_and_unit_tested() -> None:
    tests: Doc = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names))
    for name in names:
        ran = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in ran), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in ran), f"{name}: no case where it stays quiet"
    assert {case["alertname"] for case in cases} <= set(names)  # no test of an alert that is gone
    for alert in alerts():
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, alert["alert"]
        for key in ("summary", "description", "runbook"):
            assert str(alert["annotations"].get(key, "")).strip(), (alert["alert"], key)
        assert "\n" not in alert["annotations"]["runbook"].strip(), alert["alert"]  # one line


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs it)")
@pytest.mark.parametrize(("action", "path"), [("check", RULES), ("test", RULE_TESTS)])
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(action: str, path: Path) -> None:
    done = subprocess.run(
        [str(PROMTOOL), action, "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
