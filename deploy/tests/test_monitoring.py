"""Prometheus scrape config, alert rules and the Grafana dashboard, in compose and Kubernetes.

promtool ships in no PyPI package, so PromQL is parsed with promql-parser (the Rust parser)
and every metric a rule or panel reads is checked against what the running processes export.

Kubernetes (deploy/k8s/monitoring): the PodMonitors must produce the `job` labels that the
alert rules and the dashboard select, so the same PromQL matches on both runtimes; the
PrometheusRule is the compose rules file and the dashboard ConfigMap the compose dashboard.
The operator's kinds are checked against models generated from its CRDs (kubernetes-validate
has no schema for them).
"""

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
APP_SERVICES = ("auth", "clinic", "tenants", "edge")
# Series that Prometheus itself (up) or the blackbox exporter (probe_*) produce.
EXTERNAL_METRICS = {"up", "probe_success", "probe_duration_seconds", "probe_http_status_code"}
# Labels Prometheus adds to every scraped series, and the ones relabelled onto probes.
TARGET_LABELS = {"job", "instance", "service"}
Json = dict[str, Any]
Catalogue = dict[str, dict[str, set[str] | None]]
Render = Callable[[str], list[Json]]


@pytest.fixture(scope="module")
def prometheus_config() -> Json:
    config: Json = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return config


@pytest.fixture(scope="module")
def rules() -> list[Json]:
    groups: list[Json] = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboards() -> list[Json]:
    return [
        json.loads(path.read_text()) for path in sorted((GRAFANA / "dashboards").glob("*.json"))
    ]


def panels(dashboard: Json) -> Iterator[Json]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: Json) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) with Grafana's variables replaced the way Grafana would."""
    variables = {v["name"]: v.get("allValue", "") for v in dashboard["templating"]["list"]}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m")
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            yield panel["title"], expr


def selectors(expr: str) -> list[Any]:
    found: list[Any] = []
    promql_parser.walk(
        promql_parser.parse(expr),
        lambda node: found.append(node) if isinstance(node, promql_parser.VectorSelector) else None,
    )
    return found


def job_regex(selector: Any) -> re.Pattern[str] | None:
    for matcher in selector.matchers.matchers:
        if matcher.name == "job":
            op = str(matcher.op)
            value = re.escape(matcher.value) if op.endswith("Equal") else matcher.value
            assert "Not" not in op, "negative job matchers are not used here"
            return re.compile(value)
    return None


def check_exported(expr: str, catalogue: Catalogue, jobs: dict[str, str]) -> None:
    """Each metric the expression reads exists in every job its ``job`` matcher selects."""
    for selector in selectors(expr):
        name = selector.name
        assert name, f"selector without a metric name in {expr}"
        if name in EXTERNAL_METRICS:
            continue
        pattern = job_regex(selector)
        selected = [j for j in jobs if pattern is None or pattern.fullmatch(j)]
        processes = [jobs[j] for j in selected if jobs[j] in catalogue]
        assert processes, f"{name}: its job matcher selects no scraped process"
        exporting = [p for p in processes if name in catalogue[p]]
        if pattern is None:
            assert exporting, f"{name} is exported by no process ({expr})"
        else:
            assert exporting == processes, (
                f"{name} is missing from {set(processes) - set(exporting)}"
            )
        for matcher in selector.matchers.matchers:
            if matcher.name in TARGET_LABELS or matcher.name == "__name__":
                continue
            for process in exporting:
                labels = catalogue[process][name]
                if labels is not None:  # None: declared, but no sample showed its labels yet
                    assert matcher.name in labels, f"{name} has no label {matcher.name}"


@pytest.fixture(scope="module")
def job_processes(prometheus_config: Json) -> dict[str, str]:
    """Scrape job -> the process whose metrics it collects (from the targets it discovers)."""
    result: dict[str, str] = {}
    for job in prometheus_config["scrape_configs"]:
        names = [n for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        hosts = [t.split(":")[0] for sc in job.get("static_configs", []) for t in sc["targets"]]
        discovered = set(names + hosts)
        result[job["job_name"]] = discovered.pop() if len(discovered) == 1 else "blackbox"
    return result


def test_every_process_is_scraped_on_its_metrics_path(
    prometheus_config: Json, image_ports: dict[str, int], compose_config: Json
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    for name in APP_SERVICES:
        job = jobs[name]
        assert job["metrics_path"] == "/metrics/"
        # DNS discovery: every replica of a --scale'd service is its own target.
        (sd,) = job["dns_sd_configs"]
        assert sd == {
            "names": [name],
            "type": "A",
            "port": image_ports[name],
            "refresh_interval": "15s",
        }
    traefik = jobs["traefik"]
    static = yaml.safe_load((ROOT / "gateway/traefik/traefik.yml").read_text())
    assert static["metrics"]["prometheus"]["manualRouting"] is True
    web_port = static["entryPoints"]["web"]["address"].rsplit(":", 1)[1]
    assert traefik["static_configs"] == [{"targets": [f"traefik:{web_port}"]}]
    # The token check's counters: Traefik's internal entry point, which is never published.
    token_checks = jobs["token-checks"]
    assert token_checks["metrics_path"] == "/metrics/"
    internal_port = static["entryPoints"]["internal"]["address"].rsplit(":", 1)[1]
    assert token_checks["static_configs"] == [{"targets": [f"traefik:{internal_port}"]}]
    published = [p["target"] for p in compose_config["services"]["traefik"]["ports"]]
    assert int(internal_port) not in published
    assert set(compose_config["services"]) >= {"traefik", "blackbox", *APP_SERVICES}


def test_health_probes_every_replica_of_each_database_service(prometheus_config: Json) -> None:
    job = next(j for j in prometheus_config["scrape_configs"] if j["job_name"] == "health")
    assert job["params"] == {"module": ["http_health"]}
    assert {sd["names"][0] for sd in job["dns_sd_configs"]} == {"auth", "clinic", "tenants"}
    relabels = {r.get("target_label"): r for r in job["relabel_configs"]}
    assert relabels["__param_target"]["replacement"] == "http://${1}/health/"
    assert relabels["__address__"]["replacement"] == "blackbox:9115"
    blackbox = yaml.safe_load((PROMETHEUS / "blackbox.yml").read_text())
    assert blackbox["modules"]["http_health"]["http"]["valid_status_codes"] == [200]


def test_rule_files_are_where_prometheus_loads_them(
    prometheus_config: Json, compose_config: Json
) -> None:
    mounts = {
        Path(v["source"]): v["target"]
        for v in compose_config["services"]["prometheus"]["volumes"]
        if v["type"] == "bind"
    }
    container_dir = mounts[PROMETHEUS]
    assert prometheus_config["rule_files"] == [f"{container_dir}/rules/*.yml"]


def test_every_rule_is_a_complete_alert_with_valid_promql(rules: list[Json]) -> None:
    assert len(rules) >= 6
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        promql_parser.parse(rule["expr"])  # raises on a syntax error


def test_alerts_cover_health_errors_and_latency(rules: list[Json]) -> None:
    exprs = " ".join(rule["expr"] for rule in rules)
    assert "up{" in exprs
    assert "probe_success" in exprs
    assert 'status=~"5.."' in exprs
    assert "histogram_quantile(0.99" in exprs


def test_a_target_down_alert_covers_every_scraped_job(
    rules: list[Json], prometheus_config: Json
) -> None:
    (target_down,) = (rule for rule in rules if rule["alert"] == "DentiaProTargetDown")
    (pattern,) = re.findall(r'up\{job=~"([^"]+)"\}', target_down["expr"])
    # `health` is the blackbox probe job: DentiaProServiceUnhealthy watches it (probe_success).
    scraped = {job["job_name"] for job in prometheus_config["scrape_configs"]} - {"health"}
    missed = {job for job in scraped if not re.fullmatch(pattern, job)}
    assert not missed, f"DentiaProTargetDown does not watch {sorted(missed)}"


def test_the_promql_parser_rejects_broken_queries() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("sum(rate(http_requests_total[5m])")


def test_dashboard_is_provisioned_with_the_provisioned_datasource(dashboards: list[Json]) -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (dashboard,) = dashboards
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]


def test_dashboard_shows_rates_errors_latency_health_and_pools(dashboards: list[Json]) -> None:
    (dashboard,) = dashboards
    queries = " ".join(expr for _, expr in dashboard_queries(dashboard))
    for needle in (
        "rate(http_requests_total",
        'status=~"5.."',
        "histogram_quantile(0.5, sum by (job, le)",
        "histogram_quantile(0.99, sum by (job, le)",
        "histogram_quantile(0.99, sum by (router, le)",
        "rate(traefik_router_requests_total",
        "probe_success",
        "db_pool_checked_out",
    ):
        assert needle in queries, needle


def test_every_dashboard_query_parses(dashboards: list[Json]) -> None:
    for dashboard in dashboards:
        for title, expr in dashboard_queries(dashboard):
            try:
                promql_parser.parse(expr)
            except ValueError as exc:
                pytest.fail(f"{title}: {exc}: {expr}")


def test_alerts_read_only_metrics_the_services_export(
    rules: list[Json], exported_metrics: Catalogue, job_processes: dict[str, str]
) -> None:
    for rule in rules:
        check_exported(rule["expr"], exported_metrics, job_processes)


def test_dashboard_reads_only_metrics_the_services_export(
    dashboards: list[Json], exported_metrics: Catalogue, job_processes: dict[str, str]
) -> None:
    for dashboard in dashboards:
        for _, expr in dashboard_queries(dashboard):
            check_exported(expr, exported_metrics, job_processes)


def test_metric_check_catches_an_unknown_metric_and_a_wrong_job(
    exported_metrics: Catalogue, job_processes: dict[str, str]
) -> None:
    with pytest.raises(AssertionError, match="exported by no process"):
        check_exported("rate(http_request_total[5m])", exported_metrics, job_processes)
    with pytest.raises(AssertionError, match="missing from"):
        check_exported('auth_logins_total{job="clinic"}', exported_metrics, job_processes)
    with pytest.raises(AssertionError, match="has no label"):
        check_exported('http_requests_total{code="500"}', exported_metrics, job_processes)


def test_every_process_exports_the_documented_metrics(exported_metrics: Catalogue) -> None:
    common = {
        "http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_flight",
        "http_requests_waiting", "db_pool_size", "db_pool_checked_out", "db_pool_overflow",
        "process_resident_memory_bytes",
    }  # fmt: skip
    domain = {
        "auth": "auth_logins_total",
        "clinic": "clinic_records_created_total",
        "tenants": "tenants_changes_total",
    }
    for name in APP_SERVICES:
        expected = common | ({domain[name]} if name in domain else set())
        assert expected <= exported_metrics[name].keys(), name
    assert {
        "traefik_router_requests_total",
        "traefik_router_request_duration_seconds_bucket",
        "traefik_service_requests_total",
        "traefik_service_server_up",
        # The token check inside Traefik (its internal entry point).
        "gateway_token_checks_total",
        "gateway_token_check_signing_keys",
    } <= exported_metrics["traefik"].keys()


# ------------------------------------------------------------------ Kubernetes

MODELS = {"PodMonitor": monitoring.PodMonitor, "PrometheusRule": monitoring.PrometheusRule}


def by_kind(objects: list[Json], kind: str) -> dict[str, Json]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def validate_against_crd(obj: Json) -> None:
    """Parse with the CRD's model and dump it back: a field the CRD does not know is dropped
    on the way, so any difference is a misspelt or misplaced field (or a wrong type)."""
    model = MODELS[obj["kind"]].model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj


@pytest.fixture(scope="module")
def production(render_kustomization: Render) -> list[Json]:
    return render_kustomization("overlays/production")


@pytest.fixture(scope="module")
def pod_monitors(production: list[Json]) -> dict[str, Json]:
    return by_kind(production, "PodMonitor")


@pytest.fixture(scope="module")
def traefik_values() -> Json:
    values: Json = yaml.safe_load((DEPLOY / "k8s" / "traefik-values.yaml").read_text())
    return values


def test_operator_objects_validate_against_the_crds(production: list[Json]) -> None:
    checked = [o for o in production if o["apiVersion"] == "monitoring.coreos.com/v1"]
    assert {o["kind"] for o in checked} == {"PodMonitor", "PrometheusRule"}
    for obj in checked:
        validate_against_crd(obj)


def test_the_crd_check_catches_a_misplaced_field(pod_monitors: dict[str, Json]) -> None:
    broken = copy.deepcopy(pod_monitors["dentiapro"])
    broken["spec"]["podMetricsEndpoints"][0]["metricsPath"] = "/metrics/"  # it is `path`
    with pytest.raises(AssertionError):
        validate_against_crd(broken)


def _scrape_jobs(
    pod_monitors: dict[str, Json], production: list[Json], traefik_values: Json
) -> dict[str, str]:
    """The `job` label of each target the PodMonitors make -> the process it scrapes, worked
    out as the operator does: a relabelled job, else the ``jobLabel`` pod label's value, else
    ``<namespace>/<PodMonitor name>`` (which no rule would match)."""
    pods = [
        ("dentiapro", o["spec"]["template"]["metadata"]["labels"], o["spec"]["template"]["spec"])
        for o in production
        if o["kind"] == "Deployment"
    ]
    traefik_labels = {"app.kubernetes.io/name": "traefik"}  # the Helm chart's pod labels
    # The chart gives its container a port named after each entry of `ports`, exposed by its
    # Service or not.
    traefik_ports = [{"name": name} for name in traefik_values["ports"]]
    pods.append(("traefik", traefik_labels, {"containers": [{"ports": traefik_ports}]}))
    jobs: dict[str, str] = {}
    for monitor in pod_monitors.values():
        spec = monitor["spec"]
        namespaces = spec.get("namespaceSelector", {}).get(
            "matchNames", [monitor["metadata"]["namespace"]]
        )
        for namespace, labels, pod in pods:
            if namespace not in namespaces or not _selects(spec["selector"], labels):
                continue
            names = {p.get("name") for c in pod.get("containers", []) for p in c.get("ports", [])}
            for endpoint in spec["podMetricsEndpoints"]:
                assert endpoint["port"] in names, (monitor["metadata"]["name"], endpoint)
                relabelled = [
                    r["replacement"]
                    for r in endpoint.get("relabelings", [])
                    if r.get("targetLabel") == "job"
                ]
                default = f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
                job = (
                    relabelled[-1] if relabelled else labels.get(spec.get("jobLabel", ""), default)
                )
                process = (
                    "blackbox" if endpoint["path"] == "/probe" else labels["app.kubernetes.io/name"]
                )
                assert jobs.setdefault(job, process) == process, job
    return jobs


def _selects(selector: Json, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.fixture(scope="module")
def kubernetes_jobs(
    pod_monitors: dict[str, Json], production: list[Json], traefik_values: Json
) -> dict[str, str]:
    return _scrape_jobs(pod_monitors, production, traefik_values)


def test_pod_monitors_make_the_jobs_compose_scrapes(
    kubernetes_jobs: dict[str, str], job_processes: dict[str, str]
) -> None:
    """Same job names, each scraping the same process: compose's per-service jobs, traefik,
    and health (the blackbox exporter's probes)."""
    assert kubernetes_jobs == job_processes


def test_alerts_and_dashboard_match_kubernetes_targets(
    production: list[Json],
    kubernetes_jobs: dict[str, str],
    exported_metrics: Catalogue,
) -> None:
    """Every rule of the PrometheusRule and every dashboard query reads metrics that the
    targets its `job` matcher selects on Kubernetes export (none matches nothing)."""
    (rule,) = by_kind(production, "PrometheusRule").values()
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    (dashboard_map,) = (c for c in production if c["metadata"]["name"] == "dentiapro-dashboards")
    (dashboard_json,) = dashboard_map["data"].values()
    exprs += [expr for _, expr in dashboard_queries(json.loads(dashboard_json))]
    jobs_selected = 0
    for expr in exprs:
        check_exported(expr, exported_metrics, kubernetes_jobs)
        jobs_selected += sum(
            1 for s in selectors(expr) for m in s.matchers.matchers if m.name == "job"
        )
    assert jobs_selected > 10


def test_prometheus_rule_is_the_compose_rules_file(production: list[Json]) -> None:
    compose = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "dentiapro.yml").read_text())
    (rule,) = by_kind(production, "PrometheusRule").values()
    # Kustomize cannot make a PrometheusRule of the compose file: the two are kept in step.
    assert rule["spec"]["groups"] == compose["groups"], (
        "deploy/k8s/monitoring/prometheus-rule.yaml must hold the groups of "
        "deploy/prometheus/rules/dentiapro.yml, word for word"
    )


def test_dashboard_config_map_is_the_compose_dashboard_for_grafanas_sidecar(
    production: list[Json],
) -> None:
    maps = [
        c
        for c in production
        if c["kind"] == "ConfigMap" and "grafana_dashboard" in c["metadata"].get("labels", {})
    ]
    (dashboards,) = maps
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [path.name for path in files]
    for path in files:
        assert json.loads(dashboards["data"][path.name]) == json.loads(path.read_text())


def test_health_probes_are_the_compose_ones(pod_monitors: dict[str, Json]) -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "health")
    (endpoint,) = pod_monitors["dentiapro-health"]["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == compose["metrics_path"]
    assert endpoint["params"] == compose["params"]
    target = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "__param_target")
    expected = next(
        r for r in compose["relabel_configs"] if r.get("target_label") == "__param_target"
    )
    assert (target["regex"], target["replacement"]) == (expected["regex"], expected["replacement"])
    service = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "service")
    assert service["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    # The blackbox exporter of the cluster has compose's module (deploy/k8s/blackbox-values.yaml).
    values = yaml.safe_load((DEPLOY / "k8s" / "blackbox-values.yaml").read_text())
    blackbox = yaml.safe_load((DEPLOY / "prometheus" / "blackbox.yml").read_text())
    assert values["config"]["modules"] == blackbox["modules"]
    address = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "__address__")
    assert address["replacement"].endswith(":9115")


def test_traefik_is_scraped_where_its_chart_runs_it(
    pod_monitors: dict[str, Json], traefik_values: Json, production: list[Json]
) -> None:
    """Compose's two jobs on Traefik: its own metrics on `web` (job `traefik`), the token
    check's counters on `internal` (job `token-checks`), each served by an IngressRoute on that
    entry point."""
    spec = pod_monitors["dentiapro-traefik"]["spec"]
    web, internal = spec["podMetricsEndpoints"]
    assert web == {"port": "web", "path": "/metrics/", "interval": "15s"}
    assert internal == {
        "port": "internal",
        "path": "/metrics/",
        "interval": "15s",
        "relabelings": [{"targetLabel": "job", "replacement": "token-checks"}],
    }
    # /metrics/ is routed on `web` by the IngressRoute (manual routing), as in compose.
    assert "--metrics.prometheus.manualRouting=true" in traefik_values["additionalArguments"]
    metrics_routes: dict[str, Json] = {}
    for ingress in by_kind(production, "IngressRoute").values():
        (entry_point,) = ingress["spec"]["entryPoints"]
        for route in ingress["spec"]["routes"]:
            if "/metrics/" in route["match"]:
                assert metrics_routes.setdefault(entry_point, route) is route, entry_point
    assert set(metrics_routes) == {"web", "internal"}
    assert metrics_routes["web"]["services"][0]["name"] == "prometheus@internal"
    # The plugin's `metrics` mode answers on the internal entry point, before noop@internal.
    assert metrics_routes["internal"]["middlewares"] == [{"name": "token-check-metrics"}]
    plugin = by_kind(production, "Middleware")["token-check-metrics"]["spec"]["plugin"]
    assert plugin == {"tokencheck": {"mode": "metrics"}}
    # A port of the pod that the chart's Service never exposes: Prometheus scrapes the pods.
    assert traefik_values["ports"]["internal"]["expose"] == {"default": False}
    # The namespace the NetworkPolicies let Traefik in from.
    (namespace,) = spec["namespaceSelector"]["matchNames"]
    policy = by_kind(production, "NetworkPolicy")["clinic"]
    sources = [entry for rule in policy["spec"]["ingress"] for entry in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": spec["selector"]["matchLabels"]}} in sources  # fmt: skip
