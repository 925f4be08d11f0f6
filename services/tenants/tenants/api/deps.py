"""What the tenant routes depend on: settings, the tenant named in the path, pagination."""

from dataclasses import dataclass
from typing import Annotated

from common.db import SessionDep
from common.errors import NotFound
from fastapi import Depends, Path, Request
from starlette.datastructures import URL

from tenants import crud
from tenants.models import Tenant
from tenants.settings import TenantsSettings

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
INVALID_PAGE = "Invalid page."


def get_settings(request: Request) -> TenantsSettings:
    settings: TenantsSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[TenantsSettings, Depends(get_settings)]


# Ids beyond a 64-bit integer name nothing (and SQLite cannot bind them): a 404 like any other.
TenantId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def get_tenant(tenant_id: TenantId, session: SessionDep) -> Tenant:
    tenant = crud.get_tenant(session=session, tenant_id=tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


@dataclass(frozen=True, slots=True)
class Paging:
    """DRF's PageNumberPagination: ``?page=`` from 1, ``?page_size=`` default 50, at most 200."""

    page: int
    page_size: int
    url: URL

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def links(self, count: int) -> tuple[str | None, str | None]:
        """Absolute next/previous URLs; a page past the end is a 404 as in DRF."""
        last_page = max(1, -(-count // self.page_size))
        if self.page > last_page:
            raise NotFound(INVALID_PAGE)
        next_url = (
            str(self.url.include_query_params(page=self.page + 1))
            if self.page < last_page
            else None
        )
        if self.page == 1:
            previous_url = None
        elif self.page == 2:
            previous_url = str(self.url.remove_query_params("page"))
        else:
            previous_url = str(self.url.include_query_params(page=self.page - 1))
        return next_url, previous_url


def client_url(request: Request) -> URL:
    """The request URL as the client sees it through the gateway (scheme and host it used)."""
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    return request.url.replace(
        scheme=proto if proto in ("http", "https") else request.url.scheme,
        netloc=host or request.headers.get("host") or request.url.netloc,
    )


def get_paging(request: Request, page: str | None = None, page_size: str | None = None) -> Paging:
    try:
        number = int(page) if page is not None else 1
    except ValueError:
        number = 0
    if number < 1:
        raise NotFound(INVALID_PAGE)
    try:
        size = int(page_size) if page_size is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        size = DEFAULT_PAGE_SIZE
    # DRF ignores a page_size that is not a positive number and caps a large one.
    if size < 1:
        size = DEFAULT_PAGE_SIZE
    return Paging(page=number, page_size=min(size, MAX_PAGE_SIZE), url=client_url(request))


PagingDep = Annotated[Paging, Depends(get_paging)]
