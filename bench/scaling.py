"""The scaling run: the same requests with 1k vs 100k patients, and over 1 vs 1,000 tenants.

GET by id, list and search, each alone, through the gateway. First in one tenant
(``bench_scale``, provisioned through the API) holding ``--patients`` then
``--scaling-patients`` patients (added with SQL: fast); then with the token of one tenant and of
all ``--tenants`` tenants (each created through the tenants API, its admin invited, registered
and logged in, its schema provisioned by its first clinic request, then 10 patients).
"""

import asyncio
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import mixes
import report
import seed
from sqlalchemy import Engine

SCALE_TENANT = "bench_scale"
TENANT_PATIENTS = 10  # patients in each tenant of the many-tenants run


class Harness(Protocol):
    """What the scaling run needs of scripts/bench.py's ``Bench``."""

    args: Any
    work: Path
    clinic_engine: Engine

    @property
    def gateway_url(self) -> str: ...

    def log(self, message: str) -> None: ...

    def patient_count(self, schema: str) -> int: ...

    def series(
        self, *, target: str, mix: str, config: Path, extra: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...

    async def new_tenants(
        self, client: httpx.AsyncClient, schemas: Sequence[str], concurrency: int = 8
    ) -> list[seed.TenantData]: ...


def run(bench: Harness) -> dict[str, Any]:
    """Every scaling case; returns its runs, a summary per case and the comparisons."""
    runs: list[dict[str, Any]] = []

    def operations(case: str, path: Path, extra: Mapping[str, Any]) -> None:
        for operation in mixes.SCALING_OPERATIONS:
            runs.extend(
                bench.series(
                    target="gateway", mix=operation, config=path, extra={"case": case, **extra}
                )
            )

    base, large = bench.args.patients, bench.args.scaling_patients
    tenant = asyncio.run(_scale_tenant(bench))
    tenant.patients += seed.insert_patients(bench.clinic_engine, SCALE_TENANT, base - 1)
    for size in (base, large):
        if size > base:
            tenant.patients += seed.insert_patients(bench.clinic_engine, SCALE_TENANT, size - base)
        count = bench.patient_count(SCALE_TENANT)
        bench.log(f"scaling: {count} patients in one tenant")
        path = mixes.write_config(bench.work / f"scale-{size}.lua", [tenant], size)
        operations(f"patients={size}", path, {"patients_in_tenant": count})

    tenants = many_tenants(bench, bench.args.tenants)
    for group in (tenants[:1], tenants):
        path = mixes.write_config(bench.work / f"tenants-{len(group)}.lua", group, TENANT_PATIENTS)
        operations(f"tenants={len(group)}", path, {"tenants_in_mix": len(group)})

    summary = []
    for case in dict.fromkeys(r["case"] for r in runs):
        for row in report.summarise([r for r in runs if r["case"] == case]):
            summary.append({"case": case, **row})
    latency = ("p50", report.SCALING_FACTOR)
    comparisons = [
        *report.compare(
            summary,
            f"patients={base}",
            f"patients={large}",
            {"get_patient": latency, "search_patients": latency},
        ),
        *report.compare(
            summary,
            "tenants=1",
            f"tenants={len(tenants)}",
            dict.fromkeys(mixes.SCALING_OPERATIONS, ("cpu", report.TENANTS_FACTOR)),
        ),
    ]
    return {"runs": runs, "summary": summary, "comparisons": comparisons}


async def _scale_tenant(bench: Harness) -> seed.TenantData:
    async with httpx.AsyncClient(timeout=30.0) as client:
        (tenant,) = await bench.new_tenants(client, [SCALE_TENANT])
        await seed.seed_records(client, bench.gateway_url, tenant, patients=1, consultations=1)
        return tenant


def many_tenants(bench: Harness, count: int) -> list[seed.TenantData]:
    """``count`` tenants through the API, each with a cabinet and ``TENANT_PATIENTS`` patients."""
    schemas = [f"bench_t{i:04d}" for i in range(1, count + 1)]
    started = time.monotonic()

    async def create() -> list[seed.TenantData]:
        async with httpx.AsyncClient(timeout=120.0) as client:
            tenants = await bench.new_tenants(client, schemas)
            bench.log(f"{count} tenants and users created in {time.monotonic() - started:.0f} s")

            async def provision(tenant: seed.TenantData) -> None:
                # The first clinic request of a tenant creates and migrates its schema.
                await seed.seed_records(
                    client, bench.gateway_url, tenant, patients=1, consultations=1
                )

            # One at a time: clinic provisions different tenants concurrently in one process
            # unsafely (Alembic's op/context proxies are process-global; seen as "relation
            # <schema>.patient does not exist"), see docs/performance.md.
            await seed.gather_limited((partial(provision, t) for t in tenants), 1)
            return tenants

    tenants = asyncio.run(create())
    bench.log(f"{count} tenant schemas provisioned in {time.monotonic() - started:.0f} s")
    for tenant in tenants:
        tenant.patients += seed.insert_patients(
            bench.clinic_engine, tenant.schema, TENANT_PATIENTS - 1
        )
    return tenants
