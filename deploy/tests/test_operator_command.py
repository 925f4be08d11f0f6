"""deploy/README.md's recipe for running ``dentiapro`` commands in the cluster: the shell
function as written there, run with a stand-in for ``kubectl`` that records what it is asked.

The pod it would create (``kubectl run``'s own pod, merge-patched with ``--overrides``, as
kubectl does) is validated against the Kubernetes schemas and checked against the rendered
overlay: the migrate image's settings and Secrets, the migration's NetworkPolicy, its hardening.
No cluster runs here, so what kubectl and the API server then do is not tested.
"""

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.33.0"
SECTION = "## The operator's command in containers"
GENERATED = {"envFrom": "dentiapro-config-4ash", "env": "dentiapro-database-4ash"}
Json = dict[str, Any]
Render = Callable[[str], list[Json]]

# Answers the recipe's `kubectl get deployment tenants -o jsonpath=...` with generated names,
# and writes the arguments of `kubectl run` NUL-separated (they hold newlines) to $RECORD.
FAKE_KUBECTL = """
kubectl() {
  case "$*" in
    *" get deployment "*envFrom*) printf %s "$GENERATED_CONFIG" ;;
    *" get deployment "*env*) printf %s "$GENERATED_SECRET" ;;
    *" run "*) printf '%s\\0' "$@" > "$RECORD" ;;
    *) echo "unexpected: kubectl $*" >&2; return 1 ;;
  esac
}
"""


def recipe() -> str:
    """The Kubernetes block of the section: its settings and the ``dentiapro`` function."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", section, re.S) if "kubectl" in b]
    definitions = block.split("\n\n", 1)[0]  # before the example calls
    assert "dentiapro() {" in definitions
    return definitions


def run_recipe(tmp_path: Path, *args: str) -> list[str]:
    """``dentiapro *args`` as the recipe runs it: the arguments ``kubectl run`` got."""
    record = tmp_path / "kubectl-run"
    script = FAKE_KUBECTL + recipe() + '\ndentiapro "$@"\n'
    subprocess.run(
        ["bash", "-c", script, "recipe", *args],
        env={
            "PATH": "/usr/bin:/bin",
            "RECORD": str(record),
            "GENERATED_CONFIG": GENERATED["envFrom"],
            "GENERATED_SECRET": GENERATED["env"],
        },
        check=True,
        timeout=30,
    )
    return record.read_text().split("\0")[:-1]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as ``kubectl run --overrides`` applies its JSON (lists are replaced)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def pod(arguments: list[str]) -> Json:
    """The pod ``kubectl run NAME --image=... --labels=... --overrides=...`` creates."""
    assert arguments[:3] == ["-n", "dentiapro", "run"]
    name = arguments[3]
    options = dict(arg[2:].split("=", 1) for arg in arguments[4:] if "=" in arg)
    assert {"--rm", "-i", "--quiet"} <= set(arguments)
    labels = dict(pair.split("=", 1) for pair in options["labels"].split(","))
    generated = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "dentiapro", "labels": labels},
        "spec": {
            "containers": [{"name": name, "image": options["image"], "stdin": True}],
            "restartPolicy": options["restart"],
        },
    }
    result: Json = merge_patch(generated, json.loads(options["overrides"]))
    return result


def by_kind(objects: list[Json], kind: str) -> dict[str, Json]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_recipe_runs_the_command_as_given_in_a_valid_pod(tmp_path: Path) -> None:
    name = "Cabinet d'Orthodontie  de Lyon"  # an apostrophe and two spaces, kept as they are
    arguments = run_recipe(
        tmp_path, "tenants", "create", "--schema-name", "lyon", "--name", name, "--domain", "x.fr"
    )
    created = pod(arguments)

    kubernetes_validate.validate(created, KUBERNETES_VERSION, strict=True)
    (container,) = created["spec"]["containers"]
    assert container["command"] == [
        "dentiapro",
        "tenants",
        "create",
        "--schema-name",
        "lyon",
        "--name",
        name,
        "--domain",
        "x.fr",
    ]
    assert container["image"].endswith("/migrate:0.1.0")
    # kubectl run -i attaches to it: the overrides replace the container kubectl made so.
    assert container["stdin"] is True
    assert container["stdinOnce"] is True
    assert created["spec"]["restartPolicy"] == "Never"


def test_the_pod_has_the_migration_jobs_settings_policy_and_hardening(
    tmp_path: Path, render_kustomization: Render
) -> None:
    production = render_kustomization("overlays/production")
    created = pod(run_recipe(tmp_path, "tenants", "list"))
    (container,) = created["spec"]["containers"]
    job = by_kind(production, "Job")["migrate"]["spec"]["template"]["spec"]
    (job_container,) = job["containers"]

    # The names the recipe reads from the tenants Deployment are the generated ones it uses.
    (tenants,) = by_kind(production, "Deployment")["tenants"]["spec"]["template"]["spec"][
        "containers"
    ]
    config = tenants["envFrom"][0]["configMapRef"]["name"]
    (database,) = [e for e in tenants["env"] if e["name"] == "TENANTS_DATABASE_URL"]
    secret = database["valueFrom"]["secretKeyRef"]["name"]
    assert config in by_kind(production, "ConfigMap")
    assert config.startswith("dentiapro-config-")
    assert container["envFrom"] == [{"configMapRef": {"name": GENERATED["envFrom"]}}]
    # The migrate Job's database settings, from the same Secret (clinic's is not needed).
    wanted = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in job_container["env"]
        if e["name"] != "CLINIC_DATABASE_URL"
    }
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]} == wanted
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {GENERATED["env"]}
    assert set(wanted.values()) <= set(by_kind(production, "Secret")[secret]["data"])

    # The migration's NetworkPolicy selects it (PostgreSQL and DNS only); hardened as the Job.
    policy = by_kind(production, "NetworkPolicy")["migrate"]["spec"]["podSelector"]
    assert policy["matchLabels"].items() <= created["metadata"]["labels"].items()
    assert created["spec"]["securityContext"] == job["securityContext"]
    assert container["securityContext"] == job_container["securityContext"]
    assert created["spec"]["automountServiceAccountToken"] is False
    assert container["volumeMounts"] == job_container["volumeMounts"]
