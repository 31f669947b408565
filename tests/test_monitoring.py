"""The shipped alerting rules and Grafana dashboard (docs/monitoring/) work against the service.

- promtool checks the rules and runs their unit tests (alerts.test.yml): each alert fires on
  the series that should fire it and stays quiet on a healthy mix.
- The PrometheusRule for Kubernetes holds exactly the rules of alerts.yml.
- Every expression of the rules and the dashboard is valid PromQL (promtool checks them as
  recording rules) and names only metrics that a live server and worker export.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sparc_video.core.settings import Settings
from tests.fixtures.prometheus import PrometheusTools
from tests.fixtures.redis import free_port
from tests.fixtures.service import start_service

MONITORING = Path(__file__).resolve().parent.parent / "docs" / "monitoring"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
# Series Prometheus itself adds to every scrape.
_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects: its identifiers once strings, label matchers,
    ranges and grouping clauses are cut away, less function names and keywords."""
    text = _STRINGS.sub('""', expression)
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", text)))
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def test_metric_names_finds_what_an_expression_selects() -> None:
    expression = (
        "histogram_quantile(0.95, sum by (le, grpc_method) "
        '(rate(grpc_server_handling_seconds_bucket{grpc_type="unary"}[5m])))'
        ' / on (instance) group_left max(video_workers_live) > bool 0.5 unless up{job="x"}'
    )
    assert metric_names(expression) == {
        "grpc_server_handling_seconds_bucket",
        "video_workers_live",
        "up",
    }


def alert_rules() -> list[dict[str, str]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"{panel['title']} ({target['refId']})", target["expr"]


def all_expressions() -> list[tuple[str, str]]:
    rules = [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    return rules + list(dashboard_expressions())


def promtool(tools: PrometheusTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.promtool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )


def test_alert_rules_pass_promtool_and_their_unit_tests(prometheus_tools: PrometheusTools) -> None:
    checked = promtool(prometheus_tools, "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool(prometheus_tools, "test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert is exercised by at least one unit test.
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]
    tested_alerts = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested_alerts == {rule["alert"] for rule in alert_rules()}


def test_dashboard_expressions_are_valid_promql(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    rules = [
        {"record": f"dashboard:panel_{n}", "expr": expression}
        for n, (_, expression) in enumerate(dashboard_expressions())
    ]
    assert len(rules) > 20
    (tmp_path / "dashboard_rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    checked = subprocess.run(
        [prometheus_tools.promtool, "check", "rules", str(tmp_path / "dashboard_rules.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_prometheus_rule_for_kubernetes_holds_the_same_rules() -> None:
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert resource["kind"] == "PrometheusRule"
    alerts = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    assert resource["spec"]["groups"] == alerts["groups"]


def _exposed(text: str) -> set[str]:
    """Sample names the exposition can carry, from its families (a labelled counter with no
    child yet still declares itself), e.g. a counter `x` gives x_total and x_created."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created", ""),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


async def _scrape_when_up(session: aiohttp.ClientSession, url: str) -> str:
    """The page at `url`, once its server listens: the in-loop worker opens its metrics port
    after its database pool and Redis, a moment after the service is up."""
    deadline = time.monotonic() + 60
    while True:
        try:
            async with session.get(url) as reply:
                assert reply.status == 200, url
                return await reply.text()
        except aiohttp.ClientConnectorError:
            assert time.monotonic() < deadline, f"nothing listens at {url}"
            await asyncio.sleep(0.1)


async def test_every_expression_names_metrics_the_service_exports(
    service_settings: Callable[..., Settings],
) -> None:
    worker_port = free_port()
    settings = service_settings(worker_metrics_port=worker_port)
    async with start_service(settings) as service, aiohttp.ClientSession() as session:
        scraped = ""
        for url in (f"{service.http_url}/metrics", f"http://127.0.0.1:{worker_port}/metrics"):
            scraped += await _scrape_when_up(session, url)
    exported = _exposed(scraped) | _SYNTHETIC
    # The storage alert needs the local backend's capacity series, present in this setup.
    assert {"video_storage_free_bytes", "video_storage_capacity_bytes"} <= exported
    unknown = {
        where: sorted(metric_names(expression) - exported)
        for where, expression in all_expressions()
        if metric_names(expression) - exported
    }
    assert not unknown, unknown
    assert all(metric_names(expression) for _, expression in all_expressions())


@pytest.mark.parametrize("name", ["alerts.yml", "alerts.test.yml", "prometheusrule.yaml"])
def test_monitoring_files_are_yaml(name: str) -> None:
    assert yaml.safe_load((MONITORING / name).read_text())


async def test_workers_signing_with_a_key_the_server_does_not_publish_are_counted(
    service_settings: Callable[..., Settings],
) -> None:
    async with start_service(service_settings(), worker=False) as service:
        registry = service.app.store.workers
        await registry.heartbeat("w-good", signing_key_id=service.app.signer.key_id)
        await registry.heartbeat("w-odd", signing_key_id="sha256:" + "0" * 64)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{service.http_url}/metrics") as reply,
        ):
            text = await reply.text()
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["video_workers_unknown_signing_key"] == 1
    assert samples["video_workers_live"] == 2
