"""The mixes (operations and weights) and the Lua table bench/wrk/mix.lua loads."""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import seed

READ_OPERATIONS = ("get_patient", "get_consultation", "list_patients", "search_patients")
MIXES: dict[str, dict[str, int]] = {
    "read": dict.fromkeys(READ_OPERATIONS, 25),
    "write": {"create_patient": 34, "create_consultation": 33, "update_patient": 33},
    # 80% reads (20 each), 20% writes.
    "mixed": {
        **dict.fromkeys(READ_OPERATIONS, 20),
        "create_patient": 7,
        "create_consultation": 7,
        "update_patient": 6,
    },
    "hello": {"hello": 1},
    # Single operations, for the scaling run.
    "get_patient": {"get_patient": 1},
    "list_patients": {"list_patients": 1},
    "search_patients": {"search_patients": 1},
}
SCALING_OPERATIONS = ("get_patient", "list_patients", "search_patients")
MAX_LIST_PAGES = 20
# DentiaPro's default page (DESIGN section 5), what a list request without ?page_size= returns.
DEFAULT_PAGE_SIZE = 50
# The DRF peer's PAGE_SIZE (its settings' PEER_PAGE_SIZE default); it ignores ?page_size=. The
# main runs ask DentiaPro for the same page, so both serialise 20 rows per list.
COMPARISON_PAGE_SIZE = 20


def lua(value: Any) -> str:
    """A Python value as a Lua literal (strings byte-escaped: LuaJIT knows no \\u escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(
                chr(b) if chr(b).isalnum() or chr(b) in " _-.:/" else f"\\{b:03d}"
                for b in value.encode()
            )
            + '"'
        )
    if isinstance(value, Mapping):
        return "{" + ",".join(f"[{lua(str(k))}]={lua(v)}" for k, v in value.items()) + "}"
    return "{" + ",".join(lua(item) for item in value) + "}"


def tenant_entry(tenant: seed.TenantData) -> dict[str, Any]:
    return {
        "token": tenant.token,
        "cabinet": tenant.cabinet,
        "patients": [list(r) for r in seed.id_ranges(tenant.patients)],
        "consultations": [list(r) for r in seed.id_ranges(tenant.consultations)],
    }


def write_config(
    path: Path, tenants: Sequence[seed.TenantData], patients: int, page_size: int | None = None
) -> Path:
    """The Lua config; with ``page_size``, list and search requests carry ``&page_size=``."""
    per_page = page_size or DEFAULT_PAGE_SIZE
    pages = max(1, min(MAX_LIST_PAGES, math.ceil(patients / per_page)))
    config: dict[str, Any] = {
        "tenants": [tenant_entry(t) for t in tenants],
        "searches": list(seed.SEARCHES),
        "pages": pages,
        "mixes": MIXES,
    }
    if page_size is not None:
        config["page_size"] = page_size
    path.write_text("return " + lua(config) + "\n")
    return path
