"""Seed data for the benchmark, through the public API (and SQL for the large scaling tables).

Everything a user could do goes through HTTP: tenants are created by the platform superuser,
each tenant's admin is invited by the superuser, registers with the invitation and logs in, cabinets, patients
and consultations are POSTed through the gateway, many at once. Only the 100,000-patient table
of the scaling run is filled with one ``INSERT ... SELECT generate_series`` into the tenant's
schema, after the API provisioned that schema.
"""

import asyncio
import random
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine, text

FIRST_NAMES = (
    *("Jean", "Marie", "Luc", "Anne", "Paul", "Sophie", "Pierre", "Claire", "Louis", "Camille"),
    *("Hugo", "Emma", "Léa", "Noah", "Chloé", "Jules", "Inès", "Adam", "Zoé", "Nathan"),
)
LAST_NAMES = (
    *("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy"),
    *("Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux"),
    *("Vincent", "Fournier", "Morel", "Girard", "André", "Mercier", "Dupont"),
)
# Search terms as a receptionist types them: the start of a last name, lower case.
SEARCHES = ("mart", "dubo", "leroy", "garc", "fourn", "mich", "girard", "dupon")
DIAGNOSES = ("Caries", "Gingivitis", "Pulpitis", "Tooth fracture", "Periodontitis", "Check-up")
# No empty treatment (DentiaPro accepts one, the DRF peer does not): both get the same rows.
TREATMENTS = (
    "Composite filling",
    "Scaling",
    "Root canal",
    "Crown",
    "Monitoring",
    "Fluoride varnish",
)

T = TypeVar("T")


class SeedFailed(RuntimeError):
    """An API call of the seeding answered something unexpected."""


@dataclass
class TenantData:
    """What the wrk script needs of one tenant: a token and the ids it may ask for."""

    schema: str
    token: str
    cabinet: int = 0
    patients: list[int] = field(default_factory=list)
    consultations: list[int] = field(default_factory=list)


def _expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise SeedFailed(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


async def gather_limited(jobs: Iterable[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run the jobs with at most ``concurrency`` in flight; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, auth_url: str, username: str, password: str) -> str:
    response = await client.post(
        f"{auth_url}/api/auth/login/", json={"username": username, "password": password}
    )
    return str(_expect(response, 200)["access"])


async def create_tenant(
    client: httpx.AsyncClient, gateway_url: str, admin_token: str, schema: str
) -> None:
    response = await client.post(
        f"{gateway_url}/api/tenants/",
        json={
            "name": f"Bench {schema}",
            "schema_name": schema,
            "domain_url": f"{schema.replace('_', '-')}.bench.test",
        },
        headers=bearer(admin_token),
    )
    _expect(response, 201)


async def tenant_admin_token(
    client: httpx.AsyncClient, auth_url: str, superuser: str, schema: str, password: str
) -> str:
    """Onboard the tenant's admin as an operator would: the superuser invites it, it registers
    with the invitation (active, admin), then logs in."""
    username = f"{schema}_admin"
    email = f"{username}@example.com"
    invited = await client.post(
        f"{auth_url}/api/auth/invitations/",
        json={"email": email, "role": "admin", "tenant": schema},
        headers={"Authorization": f"Bearer {superuser}"},
    )
    _expect(invited, 201)
    response = await client.post(
        f"{auth_url}/api/auth/register/",
        json={
            "username": username,
            "password": password,
            "email": email,
            "invitation": invited.json()["token"],
        },
    )
    _expect(response, 201)
    return await login(client, auth_url, username, password)


def patient_payload(rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        "name": f"{first} {last}",
        "birthdate": f"{rng.randint(1940, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "contact_number": f"+33 6 {rng.randint(10_000_000, 99_999_999)}",
        "email": f"{_ascii(first)}.{_ascii(last)}.{rng.randint(1, 10**6)}@example.com".lower(),
    }


def _ascii(name: str) -> str:
    # "Léa" -> "Lea": the DRF peer (Django's EmailValidator) refuses a non-ASCII local part, and
    # both systems of the comparison are seeded with the same rows.
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


def consultation_payload(
    rng: random.Random, patients: Sequence[int], cabinet: int
) -> dict[str, Any]:
    return {
        "patient": rng.choice(patients),
        "cabinet": cabinet,
        "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(8, 18):02d}:00:00Z",
        "diagnosis": rng.choice(DIAGNOSES),
        "treatment": rng.choice(TREATMENTS),
    }


async def seed_records(
    client: httpx.AsyncClient,
    base_url: str,
    tenant: TenantData,
    *,
    patients: int,
    consultations: int,
    concurrency: int = 16,
    seed: int = 6,
) -> None:
    """One cabinet, then ``patients`` patients, then ``consultations`` consultations."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data, not secrets
    headers = bearer(tenant.token)
    response = await client.post(
        f"{base_url}/api/cabinets/",
        json={
            "name": "Cabinet Central",
            "address": "1 rue de la Paix",
            "contact_number": "+33 1 23 45 67 89",
        },
        headers=headers,
    )
    tenant.cabinet = int(_expect(response, 201)["id"])

    async def post(path: str, payload: dict[str, Any]) -> int:
        answer = await client.post(f"{base_url}{path}", json=payload, headers=headers)
        return int(_expect(answer, 201)["id"])

    def poster(path: str, payload: dict[str, Any]) -> Callable[[], Awaitable[int]]:
        return lambda: post(path, payload)

    patient_bodies = [patient_payload(rng) for _ in range(patients)]
    tenant.patients = await gather_limited(
        (poster("/api/patients/", body) for body in patient_bodies), concurrency
    )
    if not tenant.patients:
        return
    consultation_bodies = [
        consultation_payload(rng, tenant.patients, tenant.cabinet) for _ in range(consultations)
    ]
    tenant.consultations = await gather_limited(
        (poster("/api/consultations/", body) for body in consultation_bodies), concurrency
    )


def _quote(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


def insert_patients(engine: Engine, schema: str, count: int) -> list[int]:
    """Add ``count`` synthetic patients to ``schema`` in one statement; returns the new ids."""
    if count <= 0:
        return []
    first = "(ARRAY[" + ",".join(f"'{name}'" for name in FIRST_NAMES) + "])"
    last = "(ARRAY[" + ",".join(f"'{name}'" for name in LAST_NAMES) + "])"
    statement = text(
        f"INSERT INTO {_quote(schema)}.patient "
        "(name, birthdate, contact_number, email, created_at, updated_at) "
        f"SELECT {first}[1 + i % {len(FIRST_NAMES)}] || ' ' || "
        f"{last}[1 + (i / {len(FIRST_NAMES)}) % {len(LAST_NAMES)}], "
        "date '1940-01-01' + (i % 29000), "
        "'+33 6 ' || lpad((i % 100000000)::text, 8, '0'), "
        "'patient' || i || '@example.com', now(), now() "
        "FROM generate_series(1, :count) AS i RETURNING id"
    )
    with engine.begin() as connection:
        ids = sorted(int(row[0]) for row in connection.execute(statement, {"count": count}))
    # Fresh statistics, as autovacuum would give a table that grew this much.
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"ANALYZE {_quote(schema)}.patient"
        )
    return ids


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as inclusive ``(first, last)`` runs: 1..100000 is one pair."""
    ranges: list[tuple[int, int]] = []
    for value in sorted(set(ids)):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges
