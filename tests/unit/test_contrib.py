"""contrib/: the Prometheus alert rules and the Grafana dashboard name only metrics syncd
really exports (read off the registry an exposure serves), and the rules cover what an
operator must be paged for. `.ci/run` also runs `promtool check rules` and `promtool test
rules` on them when promtool can be fetched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.metrics.expose import build_registry
from syncd.state import Store

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "syncd-alerts.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "syncd-alerts.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "syncd-dashboard.json"
# Not syncd's: Prometheus' own scrape health and node_exporter's textfile collector.
FOREIGN = {"up", "node_textfile_mtime_seconds"}
# .ci/run fetches promtool and names it here; a promtool on PATH does as well.
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_KEYWORDS |= {"unless", "offset", "bool", "inf", "nan"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label matchers,
    grouping labels, ranges and Grafana's `$variables` left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![$\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name an exposure can serve, from the families of a fresh state DB and
    every declared in-process metric (a family is there before its first sample)."""
    db = tmp_path_factory.mktemp("contrib") / "syncd.db"
    Store.open(db).close()
    names = set()
    for family in build_registry(lambda: db).collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(<selector>, <label>)
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert found, variable["query"]["query"]
            exprs.append(found.group(1))
    return exprs


def test_the_name_reader_finds_what_an_expression_selects() -> None:
    """The check can fail: a misspelt metric is read as a name, functions, labels and
    Grafana variables are not."""
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(syncd_run_duraton_bucket{instance=~"$i"}'
        "[$__rate_interval]))) > on (job) group_left syncd_x or time() - up offset 5m"
    )
    assert metric_names(expr) == {"syncd_run_duraton_bucket", "syncd_x", "up"}


def test_the_exported_names_are_read_off_the_registry(exported: set[str]) -> None:
    """The reference set holds counters as `_total`, histograms as `_bucket`, state gauges,
    and nothing misspelt."""
    assert {
        "syncd_runs_total",
        "syncd_run_duration_seconds_bucket",
        "syncd_outbox_pending_intents",
        "syncd_dsorder_done_to_closed_seconds_bucket",
        "syncd_http_requests_total",
        "syncd_state_db_up",
    } <= exported
    assert "syncd_runs" not in exported
    assert "syncd_run_duraton_bucket" not in exported


def test_every_alert_rule_names_exported_metrics(exported: set[str]) -> None:
    """Each rule's expression selects only metrics syncd exports (or Prometheus' `up` and
    node_exporter's textfile mtime), and carries a severity and a summary."""
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | FOREIGN, (rule["alert"], names - exported - FOREIGN)
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_rules_cover_failing_jobs_lag_backlog_and_auth() -> None:
    """The alerts the issue asks for are there: a job failing, lag over a threshold, an
    outbox backlog, an auth alert (critical, at once)."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            by_metric.setdefault(name, []).append(rule)
    for metric in (
        "syncd_job_consecutive_failures",
        "syncd_checkpoint_lag_seconds",
        "syncd_outbox_oldest_pending_age_seconds",
        "syncd_alerts_open",
    ):
        assert metric in by_metric, metric
    auth = [r for r in by_metric["syncd_alerts_open"] if 'kind=~"auth|' in r["expr"]]
    assert [r["labels"]["severity"] for r in auth] == ["critical"]
    assert "for" not in auth[0]


def test_the_rule_tests_load_the_rules_file() -> None:
    """The promtool unit tests point at the rules file beside them and test its alerts."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    alerts = {rule["alert"] for rule in rules()}
    assert tested <= alerts
    assert {"SyncdJobFailing", "SyncdCheckpointLag", "SyncdOutboxBacklog"} <= tested


def test_every_dashboard_query_names_exported_metrics(exported: set[str]) -> None:
    """Each panel query (and the instance variable's) selects only metrics syncd exports."""
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)


def test_the_dashboard_is_importable() -> None:
    """Grafana's import needs the datasource input every panel refers to, and unique ids."""
    data = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in data["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


@pytest.mark.skipif(not PROMTOOL, reason="no promtool (.ci/run fetches one: PROMTOOL)")
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL once Grafana's variables are given values:
    promtool checks them as recording rules."""
    grafana = {"$__rate_interval": "5m", "$__range": "6h", "$instance": ".*"}
    exprs = []
    for query in dashboard_exprs():
        expr = query
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, query
        exprs.append(expr)
    rules = tmp_path / "dashboard.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"syncd:dashboard_query:{i}", "expr": e}
                            for i, e in enumerate(exprs)
                        ],
                    }
                ]
            }
        )
    )
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
