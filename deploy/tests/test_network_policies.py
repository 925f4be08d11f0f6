"""deploy/k8s NetworkPolicies, evaluated as Kubernetes would: every flow DentiaPro needs is
allowed, and every other one between the namespace's pods, Traefik, Prometheus, a stranger
pod and the outside world is refused.

The evaluator reads the rendered policies (kustomize output): a connection is allowed when the
destination's ingress policies allow it (or none selects the destination) and the source's
egress policies allow it (or none selects the source).
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

Json = dict[str, Any]
Render = Callable[[str], list[Json]]
NAMESPACE = "dentiapro"
PORTS = {"auth": 8001, "clinic": 8002, "tenants": 8003, "edge": 8004}
POSTGRESQL = 5432
OTLP_HTTP = 4318
TRACED = ("auth", "clinic", "tenants", "edge")


@dataclass(frozen=True)
class Peer:
    """A pod (namespace and labels, container ports) or, with no namespace, an address outside
    the cluster."""

    name: str
    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: dict[str, int] = field(default_factory=dict, hash=False)  # named container ports


def selects(selector: Json, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against labels; {} selects all."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(entry: Json, peer: Peer, policy_namespace: str) -> bool:
    """One ``from``/``to`` entry: podSelector, namespaceSelector (both: and), ipBlock."""
    if "ipBlock" in entry:
        return peer.namespace is None  # only whole-world blocks are used here
    if peer.namespace is None:
        return False  # pod and namespace selectors never match an outside address
    namespace_labels = {"kubernetes.io/metadata.name": peer.namespace}
    if "namespaceSelector" in entry:
        if not selects(entry["namespaceSelector"], namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return selects(entry.get("podSelector", {}), peer.labels)


def _port_matches(rule: Json, port: int, protocol: str, destination: Peer) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or destination.ports.get(str(wanted)) == port:
            return True
    return False


def _side_allows(
    policies: list[Json], subject: Peer, other: Peer, port: int, protocol: str, kind: str
) -> bool:
    """Whether ``subject``'s policies of ``kind`` (Ingress, Egress) let the flow through."""
    if subject.namespace != NAMESPACE:
        return True  # other namespaces are not governed by these policies
    selecting = [
        p
        for p in policies
        if kind in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    destination = subject if kind == "Ingress" else other
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peer_ok = peers not in rule or any(
                _peer_matches(entry, other, policy["metadata"]["namespace"])
                for entry in rule[peers]
            )
            if peer_ok and _port_matches(rule, port, protocol, destination):
                return True
    return False


def allowed(policies: list[Json], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
    return _side_allows(policies, src, dst, port, protocol, "Egress") and _side_allows(
        policies, dst, src, port, protocol, "Ingress"
    )


@pytest.fixture(scope="module")
def production(render_kustomization: Render) -> list[Json]:
    return render_kustomization("overlays/production")


@pytest.fixture(scope="module")
def policies(production: list[Json]) -> list[Json]:
    found = [o for o in production if o["kind"] == "NetworkPolicy"]
    assert found
    for policy in found:
        assert policy["metadata"]["namespace"] == NAMESPACE
    return found


@pytest.fixture(scope="module")
def pods(production: list[Json]) -> dict[str, Peer]:
    """The namespace's workloads as their pods, and the peers around them."""
    found: dict[str, Peer] = {}
    for obj in production:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        template = obj["spec"]["template"]
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        name = obj["metadata"]["name"]
        found[name] = Peer(name, NAMESPACE, template["metadata"]["labels"], ports)
    assert set(found) == {"auth", "clinic", "tenants", "edge", "migrate"}
    found["traefik"] = Peer("traefik", "traefik", {"app.kubernetes.io/name": "traefik"})
    found["prometheus"] = Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    found["blackbox"] = Peer(
        "blackbox", "monitoring", {"app.kubernetes.io/name": "prometheus-blackbox-exporter"}
    )
    # Where traces go when the overlay sets OTEL_EXPORTER_OTLP_ENDPOINT.
    found["collector"] = Peer(
        "collector", "monitoring", {"app.kubernetes.io/name": "opentelemetry-collector"}
    )
    found["dns"] = Peer("dns", "kube-system", {"k8s-app": "kube-dns"})
    # A pod someone runs in the namespace (a debug shell), and one elsewhere in the cluster.
    found["intruder"] = Peer("intruder", NAMESPACE, {"app.kubernetes.io/name": "debug"})
    found["stranger"] = Peer("stranger", "default", {"app.kubernetes.io/name": "traefik"})
    found["internet"] = Peer("internet", None)  # PostgreSQL, or anything outside
    return found


# (source, destination, port): every TCP flow DentiaPro needs. Nothing else may pass.
NEEDED = {
    # Traefik routes to every service (the edge: /health/ and the error pages); its token check
    # also fetches auth's JWKS and asks tenants' /internal/tenants/, on the same ports.
    *(("traefik", name, port) for name, port in PORTS.items()),
    ("auth", "tenants", PORTS["tenants"]),  # tenant resolution on /internal/
    ("clinic", "auth", PORTS["auth"]),  # JWKS
    ("tenants", "auth", PORTS["auth"]),  # JWKS
    # The edge: each service's /health/ (the aggregate), on its port; it checks no token.
    *(("edge", name, PORTS[name]) for name in ("auth", "clinic", "tenants")),
    # Prometheus scrapes every /metrics/; the blackbox exporter probes each /health/.
    *(("prometheus", name, port) for name, port in PORTS.items()),
    *(("blackbox", name, PORTS[name]) for name in ("auth", "clinic", "tenants")),
    # PostgreSQL, outside the cluster: the three services with a database, and the migrations.
    *((name, "internet", POSTGRESQL) for name in ("auth", "clinic", "tenants", "migrate")),
    # Traces, to the collector (OTLP over HTTP).
    *((name, "collector", OTLP_HTTP) for name in TRACED),
}


def test_every_pod_is_covered_by_a_default_deny(
    policies: list[Json], pods: dict[str, Peer]
) -> None:
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny policy"
    for peer in pods.values():
        if peer.namespace == NAMESPACE:
            assert selects(deny[0]["spec"]["podSelector"], peer.labels)
            # ... and by a policy of its own, naming what it accepts and reaches.
            own = [p for p in policies if p["spec"]["podSelector"].get("matchLabels")]
            if peer.name != "intruder":
                assert any(selects(p["spec"]["podSelector"], peer.labels) for p in own)


def test_every_needed_flow_is_allowed(policies: list[Json], pods: dict[str, Peer]) -> None:
    for source, destination, port in sorted(NEEDED):
        assert allowed(policies, pods[source], pods[destination], port), (source, destination)


def test_every_pod_resolves_names(policies: list[Json], pods: dict[str, Peer]) -> None:
    for name in ("auth", "clinic", "tenants", "edge", "migrate", "intruder"):
        for protocol in ("UDP", "TCP"):
            assert allowed(policies, pods[name], pods["dns"], 53, protocol), (name, protocol)
    assert not allowed(policies, pods["clinic"], pods["internet"], 53, "UDP")


def test_nothing_else_is_open(policies: list[Json], pods: dict[str, Peer]) -> None:
    ports = sorted({*PORTS.values(), POSTGRESQL, OTLP_HTTP, 80, 443, 8080})
    opened = {
        (source, destination, port)
        for (source, src), (destination, dst) in itertools.permutations(pods.items(), 2)
        for port in ports
        if destination != "dns"
        and allowed(policies, src, dst, port)
        # Traffic among other namespaces' pods is not ours to govern.
        and NAMESPACE in {src.namespace, dst.namespace}
    }
    # PostgreSQL's port is open towards any address (the server may even run in another
    # namespace); an overlay narrows it with an ipBlock. Pods of this namespace refuse it.
    database_clients = ("auth", "clinic", "tenants", "migrate")
    anywhere = {
        (source, destination, POSTGRESQL)
        for source in database_clients
        for destination, peer in pods.items()
        if peer.namespace != NAMESPACE and destination != "dns"
    }
    # The OTLP port is open towards the whole `monitoring` namespace (the collector's labels
    # depend on how it was installed); only that port, and only from the traced workloads.
    monitoring = {
        (source, destination, OTLP_HTTP)
        for source in TRACED
        for destination, peer in pods.items()
        if peer.namespace == "monitoring"
    }
    expected = NEEDED | anywhere | monitoring
    assert opened == expected, f"unexpected: {opened - expected}; missing: {expected - opened}"


def test_named_refusals(policies: list[Json], pods: dict[str, Peer]) -> None:
    """The flows a compromised pod would try first, spelled out."""
    refused = [
        ("clinic", "tenants", PORTS["tenants"]),  # clinic has no business with the registry
        ("edge", "internet", POSTGRESQL),  # the edge has no database
        ("clinic", "internet", 443),  # no way out but PostgreSQL
        ("clinic", "auth", POSTGRESQL),  # nor PostgreSQL's port on the namespace's pods
        ("stranger", "tenants", PORTS["tenants"]),  # a Traefik-looking pod elsewhere
        ("intruder", "auth", PORTS["auth"]),  # a pod started in the namespace
        ("prometheus", "migrate", 8080),
        ("traefik", "migrate", 8080),
        ("clinic", "internet", OTLP_HTTP),  # traces go to the collector, nowhere else
        ("migrate", "collector", OTLP_HTTP),  # the migrations do not trace
        ("clinic", "collector", 443),
    ]
    for source, destination, port in refused:
        assert not allowed(policies, pods[source], pods[destination], port), (source, destination)


def test_the_evaluator_is_not_a_yes_machine(pods: dict[str, Peer]) -> None:
    """Without policies everything is open; with only the default deny, nothing is."""
    assert allowed([], pods["clinic"], pods["tenants"], 8003)
    deny = {
        "metadata": {"namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    assert not allowed([deny], pods["traefik"], pods["clinic"], 8002)
    assert not allowed([deny], pods["clinic"], pods["internet"], POSTGRESQL)
