"""components/monitoring: the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`),
those tests can fail, every alert has a test, and every metric and label a rule names is exported by the services."""

from __future__ import annotations

import copy
import importlib
import os
import pathlib
import re
from typing import Any

import prometheus_client
import pytest
import yaml  # type: ignore[import-untyped]

from services.common.config import SERVICE_NAMES
from tools import k8s_check
from tools.k8s_check import K8sObject

Objects = list[K8sObject]
_METRIC = re.compile(r"(?<![\w:])(nerava_[a-zA-Z0-9_]+)(?![\w:])(\{[^}]*\})?")
_RECORDED = re.compile(r"(?<![\w:])(nerava:[a-zA-Z0-9_:]+)")
_GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def _needs_promtool() -> None:
    if k8s_check.promtool() is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool (Debian's prometheus package) is not installed here")


def _rules(objects: Objects) -> list[dict[str, Any]]:
    return [rule for group in k8s_check.prometheus_rules(objects)["groups"] for rule in group["rules"]]


def _prometheus_rule(objects: Objects) -> K8sObject:
    [found] = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    return found


def test_prod_alerts_pass_promtool_check_and_their_unit_tests(
    rendered: dict[str, Objects], tmp_path: pathlib.Path
) -> None:
    _needs_promtool()
    assert k8s_check.promtool_problems(rendered["prod"], tmp_path) == []


def test_promtool_unit_tests_fail_when_a_threshold_drifts(rendered: dict[str, Objects], tmp_path: pathlib.Path) -> None:
    _needs_promtool()
    drifted = copy.deepcopy(rendered["prod"])
    for rule in _rules(drifted):
        if rule.get("alert") == "NeravaOutboxStalled":
            rule["expr"] = rule["expr"].replace("> 300", "> 3000")
    problems = k8s_check.promtool_problems(drifted, tmp_path)
    assert len(problems) == 1
    assert "NeravaOutboxStalled" in problems[0]


def test_promtool_check_fails_on_bad_promql(rendered: dict[str, Objects], tmp_path: pathlib.Path) -> None:
    _needs_promtool()
    broken = copy.deepcopy(rendered["prod"])
    _rules(broken)[0]["expr"] = "sum by (service (rate(nerava_rpc_requests_total[5m]))"
    problems = k8s_check.promtool_problems(broken, tmp_path)
    assert any(problem.startswith("promtool check") for problem in problems)


def test_the_operator_resources_are_checked_strictly(rendered: dict[str, Objects]) -> None:
    assert k8s_check.schema_errors(rendered["prod"]) == []
    rule = copy.deepcopy(_prometheus_rule(rendered["prod"]))
    alert = next(r for r in rule["spec"]["groups"][0]["rules"] if "alert" in r)
    alert["labels"]["severity"] = "critical"
    alert["runbook"] = "somewhere"
    del alert["annotations"]["summary"]
    errors = k8s_check.custom_resource_errors(rule)
    assert len(errors) == 3, errors


def test_every_alert_has_a_unit_test(rendered: dict[str, Objects]) -> None:
    tested = set()
    for path in (k8s_check.MONITORING / "tests").glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {check["alertname"] for check in case.get("alert_rule_test", [])}
    alerts = {rule["alert"] for rule in _rules(rendered["prod"]) if "alert" in rule}
    assert alerts - tested == set()


def _exported() -> dict[str, set[str]]:
    """Every sample name the services' registry exports (with _total, _bucket… suffixes) → its label names."""
    for service in SERVICE_NAMES:
        importlib.import_module(f"services.{service}.__main__")
    # prometheus_client keeps no public map from a sample name to its metric's label names.
    collectors = prometheus_client.REGISTRY._names_to_collectors
    return {name: set(getattr(collector, "_labelnames", ())) for name, collector in collectors.items()}


def test_every_metric_and_label_a_rule_names_is_exported(rendered: dict[str, Objects]) -> None:
    exported = _exported()
    rules = _rules(rendered["prod"])
    recorded = {rule["record"] for rule in rules if "record" in rule}
    problems = []
    for rule in rules:
        name, expr = rule.get("alert") or rule["record"], rule["expr"]
        labels: set[str] = {"le"}
        for metric, matchers in _METRIC.findall(expr):
            if metric not in exported:
                problems.append(f"{name}: {metric} is not exported")
                continue
            labels |= exported[metric]
            problems += [
                f"{name}: {metric} has no label {label}"
                for label in _MATCHER_LABEL.findall(matchers)
                if label not in exported[metric]
            ]
        problems += [f"{name}: {used} is not recorded" for used in _RECORDED.findall(expr) if used not in recorded]
        if _METRIC.search(expr):  # recording rules carry their grouping labels; raw metrics must have them
            for grouping in _GROUPING.findall(expr):
                problems += [
                    f"{name}: no metric it reads has the label {label}"
                    for label in (part.strip() for part in grouping.split(","))
                    if label and label not in labels
                ]
    assert problems == []


def test_the_metric_check_sees_a_misspelt_metric() -> None:
    assert "nerava_rpc_requests_total" in _exported()
    assert "nerava_rpc_request_total" not in _exported()
    assert _METRIC.findall('rate(nerava_rpc_requests_total{code="OK"}[5m]) / nerava:recorded') == [
        ("nerava_rpc_requests_total", '{code="OK"}')
    ]
