"""Schemathesis, with every check, against the running system through the gateway (issue 10).

The documents are the services' own (each on its private port), or the gateway's merged
``/api/openapi.json`` once it answers: ``load_documents`` is the one place that decides.
Operations on tenants run with a superuser's token, the others with a tenant admin's, in a
system of their own on PostgreSQL (it catches what SQLite lets through: ids past a column's
range, NUL characters), so deleting or renaming records never touches another test's data.

The budget: ``FUZZ_MAX_EXAMPLES`` test cases per operation and phase (CI's default keeps the
whole module near 70 s on an idle two-core machine, system start included), and
``FUZZ_SECONDS``, when set, a time budget per run in which fuzzing and stateful testing go on
repeating (``make fuzz``). Generation is deterministic (derandomized, so no seed is needed): a
failure here fails again on the next run.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))
SECONDS = os.environ.get("FUZZ_SECONDS")
# Tenants are a superuser's; everything else is a tenant member's.
SUPERUSER_PATHS = "^/api/tenants/"
SERVICES = ("auth", "clinic", "tenants")


# The own_api fixture's system: access tokens outlive the longest run (make fuzz).
SYSTEM_OVERRIDES = {"ACCESS_TOKEN_LIFETIME": "7200"}


def load_documents(system: Any) -> dict[str, dict[str, Any]]:
    """The OpenAPI documents to fuzz, by name: the gateway's merged one when it serves it,
    else each service's own, less the paths the gateway does not route to it (its own
    ``/health/``: the gateway's is the edge's)."""
    merged = httpx.get(f"{system.url}/api/openapi.json", timeout=10)
    if merged.status_code == 200:
        return {"gateway": merged.json()}
    documents = {}
    for service in SERVICES:
        response = httpx.get(f"{system.processes.url(service)}/openapi.json/", timeout=10)
        response.raise_for_status()
        document = response.json()
        document["paths"] = {
            path: item for path, item in document["paths"].items() if path.startswith("/api/")
        }
        documents[service] = document
    return documents


def seed_records(client: httpx.Client, member: dict[str, str]) -> None:
    """A cabinet, a patient and their consultation, each id 1 in the new practice: generated
    ids of 1 (the documented minimum) reach a record, and consultations can be written."""
    bodies = {
        "/api/cabinets/": {"name": "Main", "address": "1 Rue X", "contact_number": "0102030405"},
        "/api/patients/": {
            "name": "Ada",
            "birthdate": "1990-01-01",
            "contact_number": "0607080910",
        },
        "/api/consultations/": {
            "patient": 1,
            "cabinet": 1,
            "date": "2026-01-15T09:30:00Z",
            "diagnosis": "Caries",
        },
    }
    for path, body in bodies.items():
        response = client.post(path, json=body, headers=member)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == 1


def schemathesis(document: Path, gateway: str, token: str, *filters: str) -> str:
    """Run ``schemathesis run`` on ``document`` against the gateway; its output."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        str(document),
        "--url",
        gateway,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        *(["--max-time", SECONDS] if SECONDS else []),
        *filters,
    ]
    # fuzz_hooks.py, beside this file, is imported by name (schemathesis.toml's ``hooks``);
    # Schemathesis keeps its cache of examples in the working directory: the document's.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env=env,
        cwd=document.parent,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    return output


def test_every_operation_keeps_its_documented_promises(own_api: Any, tmp_path: Path) -> None:
    superuser = own_api.superuser()["Authorization"].removeprefix("Bearer ")
    # A practice of its own: the fuzzing never reaches the default tenant's records.
    _, member = own_api.tenant_admin(own_api.create_tenant())
    admin = member["Authorization"].removeprefix("Bearer ")
    seed_records(own_api.client, member)
    gateway = own_api.running.url
    for name, document in load_documents(own_api.running).items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        superusers = [p for p in document["paths"] if re.match(SUPERUSER_PATHS, p)]
        # The member's operations first: the superuser's may delete the member's tenant.
        if len(superusers) < len(document["paths"]):
            schemathesis(path, gateway, admin, "--exclude-path-regex", SUPERUSER_PATHS)
        if superusers:
            schemathesis(path, gateway, superuser, "--include-path-regex", SUPERUSER_PATHS)
