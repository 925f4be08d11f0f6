"""deploy/k8s: rendered by kustomize, validated against the Kubernetes schemas, cross-checked.

The Traefik CRDs (IngressRoute, Middleware) have no schema in kubernetes-validate, so their
references are checked here instead, and their routes against the gateway's own route table.
"""

import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "gateway" / "traefik" / "plugins-local"
APP_SERVICES = ("auth", "clinic", "tenants", "edge")
DATABASE_SERVICES = ("auth", "clinic", "tenants")
TRAEFIK_GROUP = "traefik.io/"
# The Prometheus Operator's kinds: test_k8s_monitoring.py validates them against its CRDs.
MONITORING_GROUP = "monitoring.coreos.com/"
TARGETS = ("base", "overlays/production")
KUBERNETES_VERSION = "1.33.0"  # the oldest minor release the manifests promise to support
Json = dict[str, Any]
Render = Callable[[str], list[Json]]


def by_kind(objects: list[Json], kind: str) -> dict[str, Json]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: Json) -> Json:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Json = containers[0]
    return result


@pytest.fixture(scope="module")
def production(render_kustomization: Render) -> list[Json]:
    return render_kustomization("overlays/production")


@pytest.mark.parametrize("target", TARGETS)
def test_kustomization_renders(render_kustomization: Render, target: str) -> None:
    kinds = {o["kind"] for o in render_kustomization(target)}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"Job", "ConfigMap", "IngressRoute", "Middleware", "ServersTransport"} <= kinds


def test_manifests_validate_strictly_against_the_kubernetes_schemas(
    production: list[Json],
) -> None:
    """The overlay's output: every base object, patched, plus the generated Secrets."""
    objects = production
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith((TRAEFIK_GROUP, MONITORING_GROUP)):
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15  # Deployments, Services, HPAs, PDBs, the Job, ConfigMap...


def test_strict_validation_rejects_an_unknown_field(render_kustomization: Render) -> None:
    deployment = copy.deepcopy(by_kind(render_kustomization("base"), "Deployment")["clinic"])
    container(deployment)["readinesProbe"] = {"httpGet": {"path": "/health/", "port": "http"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_base_holds_no_secret_values(render_kustomization: Render) -> None:
    base = render_kustomization("base")
    assert not by_kind(base, "Secret")
    for obj in base:
        for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for variable in c.get("env", []):
                if any(
                    word in variable["name"]
                    for word in ("PASSWORD", "DATABASE_URL", "KEY", "TOKEN")
                ):
                    assert "valueFrom" in variable or variable["name"].endswith("_FILE"), variable


def test_every_referenced_secret_and_config_map_is_generated(production: list[Json]) -> None:
    secrets = by_kind(production, "Secret")
    config_maps = by_kind(production, "ConfigMap")
    referenced = 0
    for obj in production:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["data"]
                referenced += 1
        for c in pod["containers"]:
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for variable in c.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["data"], ref
                    referenced += 1
    assert referenced >= 8


@pytest.mark.parametrize("name", APP_SERVICES)
def test_deployment_probes_resources_and_security(
    production: list[Json], name: str, image_ports: dict[str, int]
) -> None:
    deployment = by_kind(production, "Deployment")[name]
    spec = deployment["spec"]
    assert "replicas" not in spec, "the HPA owns the replica count"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    c = container(deployment)
    assert c["image"].startswith("registry.example.com/dentiapro/")
    assert c["image"].endswith(f"/{name}:0.1.0")
    assert c["ports"] == [{"name": "http", "containerPort": image_ports[name]}]
    readiness = "/health/live" if name == "edge" else "/health/"  # the edge's /health/ aggregates
    assert c["readinessProbe"]["httpGet"] == {"path": readiness, "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts  # noqa: S108 - an emptyDir, the only writable path


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_deployment_has_a_service_an_autoscaler_and_a_disruption_budget(
    production: list[Json], name: str, image_ports: dict[str, int]
) -> None:
    labels = by_kind(production, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    service = by_kind(production, "Service")[name]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": image_ports[name], "targetPort": "http"}
    ]
    hpa = by_kind(production, "HorizontalPodAutoscaler")[name]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": name
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = by_kind(production, "PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be possible"


def test_each_service_reads_only_its_own_database_secret(production: list[Json]) -> None:
    for name in APP_SERVICES:
        variables = {v["name"] for v in container(by_kind(production, "Deployment")[name])["env"] or []} if "env" in container(by_kind(production, "Deployment")[name]) else set()  # fmt: skip
        urls = {v for v in variables if v.endswith("_DATABASE_URL")}
        assert urls == ({f"{name.upper()}_DATABASE_URL"} if name in DATABASE_SERVICES else set())


def test_auth_signs_with_a_key_mounted_from_a_secret(production: list[Json]) -> None:
    auth = by_kind(production, "Deployment")["auth"]
    c = container(auth)
    variables = {v["name"]: v for v in c["env"]}
    key_file = variables["JWT_PRIVATE_KEY_FILE"]["value"]
    mount = next(m for m in c["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(
        v for v in auth["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    assert volume["secret"]["secretName"].startswith("dentiapro-jwt-")  # generated, hashed


def test_config_map_points_every_service_at_its_kubernetes_service(
    production: list[Json], image_ports: dict[str, int]
) -> None:
    configs = by_kind(production, "ConfigMap").items()
    (config,) = (c for name, c in configs if name.startswith("dentiapro-config-"))
    for name, port in image_ports.items():
        assert config["data"][f"{name.upper()}_URL"] == f"http://{name}:{port}"


def test_migration_job_has_every_database_and_the_migrate_image(production: list[Json]) -> None:
    job = by_kind(production, "Job")["migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = container(job)
    assert c["image"] == "registry.example.com/dentiapro/migrate:0.1.0"
    urls = {v["name"] for v in c["env"] if v["name"].endswith("_DATABASE_URL")}
    assert urls == {"AUTH_DATABASE_URL", "CLINIC_DATABASE_URL", "TENANTS_DATABASE_URL"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


# ----------------------------------------------------------------- Traefik CRDs


def test_ingress_routes_reference_existing_services_and_middlewares(
    production: list[Json],
) -> None:
    services = by_kind(production, "Service")
    middlewares = by_kind(production, "Middleware")
    routes = [
        r for ir in by_kind(production, "IngressRoute").values() for r in ir["spec"]["routes"]
    ]
    assert routes
    for route in routes:
        for ref in route.get("middlewares", []):
            assert ref["name"] in middlewares, ref
        for ref in route["services"]:
            if ref.get("kind") == "TraefikService":
                assert ref["name"] in {"noop@internal", "prometheus@internal"}, ref
                continue
            ports = [p["port"] for p in services[ref["name"]]["spec"]["ports"]]
            assert ref["port"] in ports, ref


def test_the_api_docs_are_public_and_served_by_the_edge(production: list[Json]) -> None:
    """/api/openapi.json and /api/docs/ reach the edge's /gateway/ paths, with no token check
    (frontend developers read them before they have an account)."""
    (route,) = (
        r
        for ir in by_kind(production, "IngressRoute").values()
        for r in ir["spec"]["routes"]
        if "/api/openapi.json" in r["match"]
    )
    assert "PathPrefix(`/api/docs/`)" in route["match"]
    assert [s["name"] for s in route["services"]] == ["edge"]
    assert [m["name"] for m in route["middlewares"]] == ["api-docs"]
    rewrite = by_kind(production, "Middleware")["api-docs"]["spec"]
    assert rewrite == {"replacePathRegex": {"regex": "^/api/", "replacement": "/gateway/"}}


def test_middlewares_reference_existing_middlewares_and_services(production: list[Json]) -> None:
    services = by_kind(production, "Service")
    middlewares = by_kind(production, "Middleware")
    namespace = next(iter(services.values()))["metadata"]["namespace"]
    for name, middleware in middlewares.items():
        spec = middleware["spec"]
        for ref in spec.get("chain", {}).get("middlewares", []):
            assert ref["name"] in middlewares, (name, ref)
        if "errors" in spec:
            ref = spec["errors"]["service"]
            assert ref["port"] in [p["port"] for p in services[ref["name"]]["spec"]["ports"]]
        for config in spec.get("plugin", {}).values():
            for key in ("authUrl", "tenantsUrl"):
                if key not in config:
                    continue
                # Traefik runs in another namespace: the URL must be the Service's FQDN.
                address = urlsplit(config[key])
                host = address.hostname or ""
                service, _, rest = host.partition(".")
                assert rest == f"{namespace}.svc.cluster.local", host
                assert address.port in [p["port"] for p in services[service]["spec"]["ports"]]


# Fields Traefik's API reports with their default value when the file leaves them out.
TRAEFIK_DEFAULTS: dict[str, Json] = {}


def _comparable(kind: str, config: Json) -> Json:
    """A middleware's configuration minus what each provider spells its own way."""
    config = copy.deepcopy(config)
    if kind == "chain":
        names = [m["name"] if isinstance(m, dict) else m for m in config["middlewares"]]
        config["middlewares"] = [name.split("@")[0] for name in names]
    elif kind == "errors":
        service = config.pop("service")
        assert (service["name"] if isinstance(service, dict) else service) == "edge"
        if "statusRewrites" in config:
            config["statusRewrites"] = {str(k): int(v) for k, v in config["statusRewrites"].items()}
    elif kind == "plugin":
        # The hosts differ (a namespace FQDN in Kubernetes): the Service's name and port count.
        for settings in config.values():
            for key in ("authUrl", "tenantsUrl"):
                if key in settings:
                    url = urlsplit(settings[key])
                    settings[key] = f"{(url.hostname or '').split('.')[0]}:{url.port}"
    for key, default in TRAEFIK_DEFAULTS.get(kind, {}).items():
        if config.get(key) == default:
            del config[key]
    return config


def test_ingress_route_serves_the_same_route_table_as_the_gateway(
    production: list[Json], traefik_with_compose_env: Any
) -> None:
    """Every router of gateway/traefik/dynamic, as Traefik loaded it, is a route here."""
    traefik = traefik_with_compose_env
    routers = traefik.get(f"{traefik.api_url}/api/http/routers").json()
    expected = sorted(
        (
            r["rule"],
            r["priority"],  # Traefik's default is the rule's length, in both providers
            tuple(m.split("@")[0] for m in r.get("middlewares", [])),
            r["service"] if r["service"].endswith("@internal") else r["service"].split("@")[0],
            tuple(r["entryPoints"]),
        )
        for r in routers
        if r["provider"] == "file"
    )
    actual = sorted(
        (
            route["match"],
            route.get("priority", len(route["match"])),
            tuple(m["name"] for m in route.get("middlewares", [])),
            route["services"][0]["name"],
            tuple(ingress["spec"]["entryPoints"]),
        )
        for ingress in by_kind(production, "IngressRoute").values()
        for route in ingress["spec"]["routes"]
    )
    assert actual == expected


def test_middlewares_are_configured_like_the_gateways(
    production: list[Json], traefik_with_compose_env: Any
) -> None:
    traefik = traefik_with_compose_env
    loaded = traefik.get(f"{traefik.api_url}/api/http/middlewares").json()
    expected: dict[str, Json] = {}
    for middleware in loaded:
        if middleware["provider"] != "file":
            continue
        kind = next(k for k, v in middleware.items() if isinstance(v, dict))
        expected[middleware["name"].split("@")[0]] = {kind: _comparable(kind, middleware[kind])}
    actual: dict[str, Json] = {}
    for name, middleware in by_kind(production, "Middleware").items():
        ((kind, config),) = middleware["spec"].items()
        actual[name] = {kind: _comparable(kind, config)}
    assert actual == expected


def test_the_migration_phase_selects_the_job_and_everything_it_needs(
    production: list[Json],
) -> None:
    """``kubectl apply -k ... -l 'app.kubernetes.io/component in (config,migration)'``."""
    phase = [
        o
        for o in production
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in {"config", "migration"}
    ]
    names = {(o["kind"], o["metadata"]["name"]) for o in phase}
    assert ("Job", "migrate") in names
    assert not [o for o in phase if o["kind"] == "Deployment"]
    c = container(by_kind(production, "Job")["migrate"])
    for source in c["envFrom"]:
        assert ("ConfigMap", source["configMapRef"]["name"]) in names
    for variable in c["env"]:
        assert ("Secret", variable["valueFrom"]["secretKeyRef"]["name"]) in names


def test_routes_use_the_gateways_upstream_timeouts(production: list[Json]) -> None:
    services_file = ROOT / "gateway" / "traefik" / "dynamic" / "services.yml"
    # The template's control lines ({{- range }}, {{- end }}) are not YAML: left out here.
    text = "\n".join(
        line for line in services_file.read_text().splitlines() if not line.startswith("{{")
    )
    file_transports = yaml.safe_load(text)["http"]["serversTransports"]
    transports = by_kind(production, "ServersTransport")
    for name, transport in file_transports.items():
        expected = {
            key: re.sub(r'^\{\{.*default "([^"]+)".*\}\}$', r"\1", str(value))  # template default
            for key, value in transport["forwardingTimeouts"].items()
        }
        assert transports[name]["spec"]["forwardingTimeouts"] == expected
    for ingress in by_kind(production, "IngressRoute").values():
        for route in ingress["spec"]["routes"]:
            for ref in route["services"]:
                if ref.get("kind") != "TraefikService":
                    assert ref["serversTransport"] in transports, ref


def _flags(tree: Any, prefix: str) -> set[str]:
    """Static configuration as Traefik CLI flags: ``--a.b.c=value`` for each leaf."""
    if isinstance(tree, dict):
        return {f for key, value in tree.items() for f in _flags(value, f"{prefix}.{key}")}
    if isinstance(tree, list):
        return {f"--{prefix.lstrip('.')}={','.join(str(v) for v in tree)}"}
    value = str(tree).lower() if isinstance(tree, bool) else str(tree)
    return {f"--{prefix.lstrip('.')}={value}"}


@pytest.fixture(scope="module")
def traefik_values() -> Json:
    values: Json = yaml.safe_load((ROOT / "deploy" / "k8s" / "traefik-values.yaml").read_text())
    return values


def test_cluster_traefik_gets_the_static_settings_of_the_gateway(traefik_values: Json) -> None:
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    expected = _flags(static["metrics"], "") | _flags(static["global"], "global")
    expected |= _flags(static["experimental"], "experimental")
    for name, entry_point in static["entryPoints"].items():
        expected |= _flags(entry_point.get("http", {}), f"entryPoints.{name}.http")
    expected = {flag.replace("--prometheus.", "--metrics.prometheus.") for flag in expected}
    given = set(traefik_values["additionalArguments"]) | set(traefik_values["globalArguments"])
    assert given == expected
    web_port = int(static["entryPoints"]["web"]["address"].rsplit(":", 1)[1])
    assert traefik_values["ports"]["web"]["port"] == web_port
    internal_port = int(static["entryPoints"]["internal"]["address"].rsplit(":", 1)[1])
    assert traefik_values["ports"]["internal"]["port"] == internal_port
    assert traefik_values["ports"]["internal"]["expose"] == {"default": False}
    assert traefik_values["logs"]["general"]["level"] == static["log"]["level"]


def test_cluster_traefik_mounts_the_token_check_plugin_from_its_config_map(
    traefik_values: Json, render_kustomization: Render
) -> None:
    """deploy/k8s/traefik renders the plugin's source into Traefik's namespace; the Helm values
    mount it where Traefik loads the module it names (its working directory is /)."""
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    ((name, plugin),) = static["experimental"]["localPlugins"].items()
    source = PLUGINS / "src" / plugin["moduleName"]
    (config_map,) = by_kind(render_kustomization("traefik"), "ConfigMap").values()
    assert config_map["metadata"]["namespace"] == "traefik"
    files = {path.name: path.read_text() for path in source.iterdir() if path.is_file()}
    assert config_map["data"] == files  # every file, as committed
    (volume,) = traefik_values["deployment"]["additionalVolumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    (mount,) = traefik_values["additionalVolumeMounts"]
    assert mount == {
        "name": volume["name"],
        "mountPath": f"/plugins-local/src/{plugin['moduleName']}",
        "readOnly": True,
    }
    assert (
        f"--experimental.localPlugins.{name}.moduleName={plugin['moduleName']}"
        in (traefik_values["additionalArguments"])
    )


def test_cluster_traefik_flags_are_accepted_by_this_traefik(
    traefik_values: Json, traefik_binary: Path, tmp_path: Path
) -> None:
    """Traefik starts with the flags (an unknown or misspelt one stops it at once)."""
    flags = [*traefik_values["globalArguments"], *traefik_values["additionalArguments"]]
    command = [
        str(traefik_binary),
        "--entryPoints.web.address=127.0.0.1:0",
        "--entryPoints.traefik.address=127.0.0.1:0",
        "--entryPoints.internal.address=127.0.0.1:0",
        "--metrics.prometheus=true",
        *flags,
    ]
    # With plugins-local/ in its working directory, as the pod has it at / (the ConfigMap's
    # mount); not in gateway/traefik, where Traefik would read traefik.yml instead of flags.
    shutil.copytree(PLUGINS, tmp_path / "plugins-local")
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        process.wait(timeout=1.5)  # a rejected flag stops Traefik within milliseconds
    except subprocess.TimeoutExpired:
        pass  # still running: the configuration was accepted
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert process.returncode in (-15, 0), output  # stopped by us, not by an error
    assert "error" not in output.lower(), output
    bad = subprocess.run(
        [str(traefik_binary), "--entryPoints.web.address=127.0.0.1:0", "--no.such.flag=1"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert bad.returncode != 0


# ------------------------------------------------------- settings and the internal token


def test_the_internal_token_reaches_auth_and_tenants_only(production: list[Json]) -> None:
    """tenants checks it, auth sends it; Traefik reads its own copy (below). The edge calls no
    /internal/ path (it only aggregates /health/), so a compromised edge holds no credential."""
    secrets = by_kind(production, "Secret")
    for obj in production:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        variables = {v["name"]: v for c in pod["containers"] for v in c.get("env", [])}
        name = obj["metadata"]["name"]
        if name in {"auth", "tenants"}:
            ref = variables["DENTIAPRO_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref["name"].startswith("dentiapro-internal-"), ref  # generated, hashed
            assert ref["key"] in secrets[ref["name"]]["data"]
        else:
            assert "DENTIAPRO_INTERNAL_TOKEN" not in variables, name


def test_traefik_reads_the_internal_token_from_its_own_namespace(
    traefik_values: Json, production: list[Json]
) -> None:
    (variable,) = [v for v in traefik_values["env"] if v["name"] == "DENTIAPRO_INTERNAL_TOKEN"]
    ref = variable["valueFrom"]["secretKeyRef"]
    # The same name (unhashed: created by hand in Traefik's namespace) and key as the overlay's.
    generated = [
        s for name, s in by_kind(production, "Secret").items() if name.startswith(ref["name"] + "-")
    ]
    (secret,) = generated
    assert ref["key"] in secret["data"]


def _gateway_settings(objects: list[Json]) -> tuple[int, int, str]:
    rate = by_kind(objects, "Middleware")["auth-rate-limit"]["spec"]["rateLimit"]
    timeouts = by_kind(objects, "ServersTransport")["upstream"]["spec"]["forwardingTimeouts"]
    return rate["average"], rate["burst"], timeouts["responseHeaderTimeout"]


def test_gateway_settings_are_set_in_the_overlay(
    production: list[Json],
    deploy_copy: Callable[[str], Path],
    kustomize: Callable[[Path], list[Json]],
) -> None:
    """GATEWAY_AUTH_RATE_AVERAGE, _BURST and GATEWAY_UPSTREAM_TIMEOUT: the overlay's
    gateway-settings.yaml decides them (defaults as DESIGN.md's), base stays untouched."""
    overlay = "overlays/production"
    assert _gateway_settings(production) == (20, 100, "30s")
    copy = deploy_copy(overlay)
    settings = copy / overlay / "gateway-settings.yaml"
    text = settings.read_text()
    for old, new in (("average: 20", "average: 7"), ("burst: 100", "burst: 15"), ("30s", "9s")):
        assert old in text
        text = text.replace(old, new)
    settings.write_text(text)
    changed = kustomize(copy / overlay)
    assert _gateway_settings(changed) == (7, 15, "9s")
    # Nothing else of the two objects moves.
    for kind, name in (("Middleware", "auth-rate-limit"), ("ServersTransport", "upstream")):
        before, after = by_kind(production, kind)[name], by_kind(changed, kind)[name]
        assert before["spec"].keys() == after["spec"].keys()


# ---------------------------------------------------------------------------------- tracing


def _config(objects: list[Json]) -> Json:
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("dentiapro-config")
    ]
    data: Json = config["data"]
    return data


def test_the_overlay_names_the_collector_address_and_leaves_tracing_off(
    production: list[Json],
    deploy_copy: Callable[[str], Path],
    kustomize: Callable[[Path], list[Json]],
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT, empty (no tracing) until the operator sets it in the
    overlay; it reaches every workload that serves requests through dentiapro-config."""
    assert _config(production)["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    for name in ("auth", "clinic", "tenants", "edge"):
        (container,) = by_kind(production, "Deployment")[name]["spec"]["template"]["spec"][
            "containers"
        ]
        sources = [source["configMapRef"]["name"] for source in container["envFrom"]]
        assert any(source.startswith("dentiapro-config") for source in sources), name
    overlay = "overlays/production"
    copy = deploy_copy(overlay)
    kustomization = copy / overlay / "kustomization.yaml"
    collector = "http://otel-collector.monitoring:4318"
    text = kustomization.read_text()
    assert "- OTEL_EXPORTER_OTLP_ENDPOINT=\n" in text
    kustomization.write_text(
        text.replace(
            "- OTEL_EXPORTER_OTLP_ENDPOINT=\n", f"- OTEL_EXPORTER_OTLP_ENDPOINT={collector}\n"
        )
    )
    changed = _config(kustomize(copy / overlay))
    assert changed["OTEL_EXPORTER_OTLP_ENDPOINT"] == collector
    # The base's settings stay as they were (a merge, not a replacement).
    assert changed == {**_config(production), "OTEL_EXPORTER_OTLP_ENDPOINT": collector}


def _documented_tracing_flags() -> list[str]:
    text = (ROOT / "deploy" / "k8s" / "traefik-values.yaml").read_text()
    return re.findall(r"^#\s+- (--tracing\.\S+)$", text, re.MULTILINE)


def test_cluster_traefik_tracing_flags_are_the_gateways_tracing_settings() -> None:
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    tracing = static["tracing"]
    documented = dict(flag.removeprefix("--").split("=", 1) for flag in _documented_tracing_flags())
    assert documented.pop("tracing.otlp.http.endpoint").endswith(":4318/v1/traces")
    assert documented == {
        "tracing.serviceName": tracing["serviceName"],
        "tracing.sampleRate": str(tracing["sampleRate"]),
        "tracing.capturedRequestHeaders": ",".join(tracing["capturedRequestHeaders"]),
    }


def test_cluster_traefik_accepts_the_tracing_flags(traefik_binary: Path, tmp_path: Path) -> None:
    flags = _documented_tracing_flags()
    assert flags
    command = [str(traefik_binary), "--entryPoints.web.address=127.0.0.1:0", *flags]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        process.wait(timeout=1.5)  # a rejected flag stops Traefik within milliseconds
    except subprocess.TimeoutExpired:
        pass
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert process.returncode in (-15, 0), output
