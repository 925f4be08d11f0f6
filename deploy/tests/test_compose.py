"""deploy/docker-compose.yml, checked by Compose v2 itself and against what it must guarantee."""

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("auth", "clinic", "tenants", "edge")
DATABASE_SERVICES = ("auth", "clinic", "tenants")
RunCompose = Callable[..., subprocess.CompletedProcess[str]]
Json = dict[str, Any]


def test_compose_config_is_valid_with_an_env_file(
    run_compose: RunCompose, compose_env_file: Path
) -> None:
    result = run_compose("config", "-q", env_file=compose_env_file)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_passwords(
    run_compose: RunCompose, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run_compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "in .env" in result.stderr  # the message says where to set it


def test_env_example_names_every_required_variable_with_placeholders(
    run_compose: RunCompose, tmp_path: Path
) -> None:
    example = (ROOT / "deploy" / ".env.example").read_text()
    values = dict(
        line.split("=", 1)
        for line in example.splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    for key, value in values.items():
        if "PASSWORD" in key:
            assert re.fullmatch(r"<[a-z-]+>", value), f"{key} must be a placeholder"
    # Filled in, the example is a complete .env.
    filled = tmp_path / ".env"
    filled.write_text(re.sub(r"<([a-z-]+)>", r"x-\1", example))
    result = run_compose("config", "-q", env_file=filled)
    assert result.returncode == 0, result.stderr


def test_every_service_is_there(compose_config: Json) -> None:
    assert set(compose_config["services"]) >= {
        "traefik",
        *APP_SERVICES,
        "migrate",
        "postgres",
        "prometheus",
        "grafana",
        "jaeger",
    }


def test_app_services_can_scale(compose_config: Json) -> None:
    """--scale needs no container_name and no fixed host port on the scaled services."""
    for name, service in compose_config["services"].items():
        assert "container_name" not in service, name
    for name in APP_SERVICES:
        assert not compose_config["services"][name].get("ports"), f"{name} publishes a port"


def test_published_ports_listen_on_loopback_by_default(compose_config: Json) -> None:
    for name, service in compose_config["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"


def test_app_services_start_after_migrations_succeed(compose_config: Json) -> None:
    for name in DATABASE_SERVICES:
        depends = compose_config["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    migrate = compose_config["services"]["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_services_reach_each_other_by_service_name_and_image_port(
    compose_config: Json, image_ports: dict[str, int]
) -> None:
    for name in ("traefik", *APP_SERVICES, "migrate"):
        environment = compose_config["services"][name]["environment"]
        for target, port in image_ports.items():
            assert environment[f"{target.upper()}_URL"] == f"http://{target}:{port}", name


def test_each_service_gets_only_its_own_database(compose_config: Json) -> None:
    services = compose_config["services"]
    for name in DATABASE_SERVICES:
        environment = services[name]["environment"]
        urls = {key for key in environment if key.endswith("_DATABASE_URL")}
        assert urls == {f"{name.upper()}_DATABASE_URL"}
        url = environment[f"{name.upper()}_DATABASE_URL"]
        assert url == (f"postgresql+psycopg2://{name}:test-{name}-password@postgres:5432/{name}")
    assert not any(key.endswith("_DATABASE_URL") for key in services["edge"]["environment"])
    assert {key for key in services["migrate"]["environment"] if key.endswith("_DATABASE_URL")} == {
        "AUTH_DATABASE_URL", "CLINIC_DATABASE_URL", "TENANTS_DATABASE_URL"
    }  # fmt: skip


def test_app_images_are_the_dockerfile_targets(compose_config: Json) -> None:
    for name in (*APP_SERVICES, "migrate"):
        build = compose_config["services"][name]["build"]
        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert build["target"] == name


def test_app_containers_are_hardened(compose_config: Json) -> None:
    assert compose_config["services"]["traefik"]["user"].split(":")[0] not in {"0", "root"}
    for name in ("traefik", *APP_SERVICES, "migrate"):
        service = compose_config["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_third_party_images_are_pinned(compose_config: Json) -> None:
    for name, service in compose_config["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rsplit(":", 1)[-1]
        # A release, never a moving tag (PostgreSQL's releases are major.minor).
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-\w+)?", tag), f"{name}: {image}"


def test_traefik_uses_the_gateway_files_where_its_static_config_expects_them(
    compose_config: Json,
) -> None:
    traefik = compose_config["services"]["traefik"]
    assert traefik["image"].startswith("traefik:v3.")
    mounts = {Path(v["source"]): v["target"] for v in traefik["volumes"] if v["type"] == "bind"}
    static_source = ROOT / "gateway" / "traefik" / "traefik.yml"
    assert mounts[static_source] == "/etc/traefik/traefik.yml"  # the image's default location
    static = yaml.safe_load(static_source.read_text())
    assert (
        mounts[ROOT / "gateway" / "traefik" / "dynamic"] == static["providers"]["file"]["directory"]
    )
    assert all(v.get("read_only") for v in traefik["volumes"])
    # Local plugins load from ./plugins-local in Traefik's working directory: the token
    # check's source, at the path its module name gives.
    plugins = static["experimental"]["localPlugins"]
    assert mounts[ROOT / "gateway" / "traefik" / "plugins-local"] == "/plugins-local"
    assert traefik["working_dir"] == "/"
    for plugin in plugins.values():
        source = ROOT / "gateway" / "traefik" / "plugins-local" / "src" / plugin["moduleName"]
        assert (source / ".traefik.yml").is_file()
    assert static["experimental"]["abortOnPluginFailure"] is True
    # The gateway port of the static configuration is the one published.
    web_port = int(static["entryPoints"]["web"]["address"].rsplit(":", 1)[1])
    assert [p["target"] for p in traefik["ports"]] == [web_port]


def test_traefik_loads_the_compose_configuration_without_errors(
    traefik_with_compose_env: Any,
) -> None:
    """The route table with compose's service URLs: every router, middleware and service of
    the file provider enabled, none reporting an error (as the gateway's own test checks with
    localhost URLs)."""
    traefik = traefik_with_compose_env
    deadline = time.monotonic() + 30
    while True:  # its API answers before the file provider has loaded the routes
        loaded = {
            kind: [
                entry
                for entry in traefik.get(f"{traefik.api_url}/api/http/{kind}").json()
                if entry.get("provider") == "file"
            ]
            for kind in ("routers", "middlewares", "services")
        }
        if all(loaded.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for kind, entries in loaded.items():
        assert entries, f"no {kind} loaded\n{traefik.log.read_text()[-3000:]}"
        for entry in entries:
            assert entry["status"] == "enabled", entry
            assert not entry.get("error"), entry
    assert {r["name"].removesuffix("@file") for r in loaded["routers"]} >= {
        "auth-public", "auth-protected", "clinic", "clinic-write", "tenants", "tenants-write",
        "health", "metrics", "not-found",
    }  # fmt: skip


def test_traefik_healthcheck_uses_the_ping_it_configures(compose_config: Json) -> None:
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    assert "ping" in static
    assert compose_config["services"]["traefik"]["healthcheck"]["test"] == [
        "CMD", "traefik", "healthcheck", "--ping"
    ]  # fmt: skip


def test_postgres_creates_the_databases_on_first_start(compose_config: Json) -> None:
    postgres = compose_config["services"]["postgres"]
    mounts = {v["target"]: v for v in postgres["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    init = mounts["/docker-entrypoint-initdb.d/10-databases.sh"]
    assert Path(init["source"]) == ROOT / "deploy" / "postgres" / "init-databases.sh"
    for name in DATABASE_SERVICES:
        assert postgres["environment"][f"{name.upper()}_DB_PASSWORD"] == f"test-{name}-password"
    # pg_isready over TCP: the init-phase server listens on its socket only.
    assert "--host=127.0.0.1" in postgres["healthcheck"]["test"]


def test_grafana_and_prometheus_mount_their_provisioning(compose_config: Json) -> None:
    grafana = {Path(v["source"]): v["target"] for v in compose_config["services"]["grafana"]["volumes"] if v["type"] == "bind"}  # fmt: skip
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dentiapro.yml").read_text()
    )["providers"]
    assert grafana[ROOT / "deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    assert grafana[ROOT / "deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    prometheus = compose_config["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mounts = {Path(v["source"]): v["target"] for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounts[ROOT / "deploy/prometheus"] == "/etc/prometheus"


@pytest.mark.parametrize("name", ["grafana", "postgres"])
def test_no_default_password_reaches_a_container(name: str, compose_config: Json) -> None:
    environment = compose_config["services"][name]["environment"]
    secrets = {key: value for key, value in environment.items() if "PASSWORD" in key}
    assert secrets
    assert all(value.startswith("test-") for value in secrets.values()), secrets


INTERNAL_TOKEN = "DENTIAPRO_INTERNAL_TOKEN"
# tenants requires it on /internal/; auth (tenant resolution) and Traefik (the token check's
# tenant status) send it. The edge calls no /internal/ path: it only aggregates /health/.
INTERNAL_TOKEN_HOLDERS = {"tenants", "auth", "traefik"}


def test_the_internal_token_reaches_only_who_sends_or_checks_it(compose_config: Json) -> None:
    services = compose_config["services"]
    for name in INTERNAL_TOKEN_HOLDERS:
        assert services[name]["environment"][INTERNAL_TOKEN] == "test-internal-token", name
    for name in set(services) - INTERNAL_TOKEN_HOLDERS:
        assert INTERNAL_TOKEN not in (services[name].get("environment") or {}), name


def test_every_holder_of_the_internal_token_requires_it(
    run_compose: RunCompose, compose_env_file: Path
) -> None:
    """Not only tenants: a Traefik started without it would get 401 from /internal/ and answer
    every protected request with 503. Read before interpolation, where the default shows."""
    result = run_compose(
        "config", "--no-interpolate", "--format", "json", env_file=compose_env_file
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    required = f"${{{INTERNAL_TOKEN}:?set {INTERNAL_TOKEN} in .env}}"
    for name in INTERNAL_TOKEN_HOLDERS:
        assert services[name]["environment"][INTERNAL_TOKEN] == required, name


def test_compose_refuses_to_start_without_the_internal_token(
    run_compose: RunCompose, compose_env_file: Path, tmp_path: Path
) -> None:
    """No default is committed: without the operator's value, compose stops and says where."""
    lines = compose_env_file.read_text().splitlines()
    env_file = tmp_path / "no-token.env"
    env_file.write_text(
        "".join(f"{line}\n" for line in lines if not line.startswith(INTERNAL_TOKEN))
    )
    result = run_compose("config", "-q", env_file=env_file)
    assert result.returncode != 0
    assert f"set {INTERNAL_TOKEN} in .env" in result.stderr


# ------------------------------------------------------------------------------- tracing

JAEGER_OTLP = "http://jaeger:4318"


def test_traefik_and_every_app_service_send_their_traces_to_jaeger(compose_config: Json) -> None:
    """DESIGN.md s.6: OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on in the edge and the services;
    Traefik's static configuration (the file compose mounts) exports to the same receiver."""
    services = compose_config["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == JAEGER_OTLP, name
    # The one-shot migrations have no requests to trace.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in services["migrate"]["environment"]
    static = yaml.safe_load((ROOT / "gateway" / "traefik" / "traefik.yml").read_text())
    assert static["tracing"]["otlp"]["http"]["endpoint"] == f"{JAEGER_OTLP}/v1/traces"
    # Jaeger's OTLP/HTTP receiver listens on the compose network, not only its own loopback.
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    assert "--set=receivers.otlp.protocols.http.endpoint=0.0.0.0:4318" in jaeger["command"]


def test_jaeger_ui_is_published_on_loopback(compose_config: Json) -> None:
    (port,) = compose_config["services"]["jaeger"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "16686", 16686)


def test_an_empty_endpoint_in_env_turns_the_services_tracing_off(
    run_compose: RunCompose, compose_env_file: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "no-tracing.env"
    env_file.write_text(compose_env_file.read_text() + "OTEL_EXPORTER_OTLP_ENDPOINT=\n")
    result = run_compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "", name
