"""Invitations: how a tenant's members join, and the only way to an admin account.

POST/GET /api/auth/invitations/, DELETE /api/auth/invitations/<id>/, and registration with an
``invitation`` (DESIGN sections 3, 4, 5). The default tenant's admins and the superuser need
no tenants service; tests of other tenants run against the real one (``tenants``).
"""

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import httpx
import pytest
from auth.invitations import invite as invite_from_the_cli
from auth.models import Invitation, Role, User
from auth.settings import AuthSettings
from pydantic import ValidationError
from sqlmodel import Session, select

Register = Callable[..., httpx.Response]
Invite = Callable[..., str]
MakeUser = Callable[..., User]
Header = Callable[..., dict[str, str]]
Login = Callable[..., dict[str, str]]
StartAuth = Callable[..., httpx.Client]
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
NOT_FOUND = {"detail": "Not found."}


class Registry(Protocol):
    def create(self, prefix: str, domain_url: str | None = None) -> dict[str, Any]: ...
    def delete(self, tenant: dict[str, Any]) -> None: ...


class Tenancy(Protocol):
    auth: httpx.Client
    registry: Registry


def _invite(client: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    return client.post("/api/auth/invitations/", json=body, headers=headers)


def _invitation_error(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"invitation": [message]}


@pytest.fixture
def root(client: httpx.Client, auth_header: Header, superuser: tuple[str, str]) -> dict[str, str]:
    return auth_header(client, *superuser)


@pytest.fixture
def admin(client: httpx.Client, auth_header: Header, make_user: MakeUser) -> dict[str, str]:
    """An admin of the default tenant (logs in without a tenants service)."""
    make_user("admin_a", role=Role.ADMIN)
    return auth_header(client, "admin_a")


# ---- creating, and registering with one ---------------------------------------------------


def test_a_superuser_invites_a_tenants_first_admin_who_joins_active_with_that_role(
    tenants: Callable[..., Tenancy],
    register: Register,
    auth_header: Header,
    superuser: tuple[str, str],
    login: Login,
) -> None:
    service = tenants()
    clinic = service.registry.create("clinic_i")["schema_name"]
    root = auth_header(service.auth, *superuser)

    created = _invite(service.auth, root, email="founder@example.com", role="admin", tenant=clinic)

    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {
        "id", "email", "role", "tenant", "token", "expires_at", "created_at", "updated_at",
    }  # fmt: skip
    assert (body["email"], body["role"], body["tenant"]) == ("founder@example.com", "admin", clinic)
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    )
    assert lifetime.total_seconds() == 604800  # INVITATION_LIFETIME's default: 7 days
    joined = register(
        service.auth, "founder", email="founder@example.com", tenant=None, invitation=body["token"]
    )
    assert joined.status_code == 201, joined.text
    assert {k: joined.json()[k] for k in ("tenant", "role", "is_active")} == {
        "tenant": clinic,
        "role": "admin",
        "is_active": True,
    }
    login(service.auth, "founder")


def test_only_a_hash_of_the_token_is_stored(
    client: httpx.Client, root: dict[str, str], db: Session
) -> None:
    body = _invite(client, root, email="hash@example.com", role="staff").json()

    stored = db.exec(select(Invitation).where(Invitation.id == body["id"])).one()

    assert stored.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in repr(stored.model_dump())


def test_an_invitation_is_used_once(
    client: httpx.Client, invite: Invite, register: Register
) -> None:
    token = invite(client, "once@example.com", role="staff")
    first = register(client, "once", email="once@example.com", invitation=token)

    again = register(client, "twice", email="once@example.com", invitation=token)

    assert first.status_code == 201
    assert (first.json()["role"], first.json()["is_active"]) == ("staff", True)
    _invitation_error(again, "This invitation has already been used.")


def _register_at_once(
    client: httpx.Client, register: Register, usernames: list[str], email: str, token: str
) -> list[httpx.Response]:
    """Registrations with one invitation from parallel threads released by a barrier."""
    barrier = threading.Barrier(len(usernames))
    responses: list[httpx.Response] = []

    def go(username: str) -> None:
        with httpx.Client(base_url=client.base_url, timeout=30) as own:
            barrier.wait()
            responses.append(register(own, username, email=email, invitation=token))

    threads = [threading.Thread(target=go, args=(username,)) for username in usernames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_two_registrations_racing_with_one_invitation_make_one_account(
    client: httpx.Client, invite: Invite, register: Register, db: Session
) -> None:
    for attempt in range(3):
        email = f"race{attempt}@example.com"
        token = invite(client, email, role="admin")

        responses = _register_at_once(
            client, register, [f"racer{attempt}a", f"racer{attempt}b"], email, token
        )

        assert sorted(r.status_code for r in responses) == [201, 400], [r.text for r in responses]
        _invitation_error(
            next(r for r in responses if r.status_code == 400),
            "This invitation has already been used.",
        )
        members = db.exec(select(User).where(User.email == email)).all()
        assert len(members) == 1  # the loser's account went with its transaction


def test_an_expired_invitation_is_refused(
    start_auth: StartAuth, invite: Invite, register: Register
) -> None:
    client = start_auth(invitation_lifetime=1)
    token = invite(client, "late@example.com")
    time.sleep(1.2)

    response = register(client, "late", email="late@example.com", invitation=token)

    _invitation_error(response, "This invitation has expired.")


def test_a_revoked_invitation_is_refused_and_gone_from_the_list(
    client: httpx.Client, root: dict[str, str], register: Register
) -> None:
    body = _invite(client, root, email="revoked@example.com", role="admin").json()

    revoked = client.delete(f"/api/auth/invitations/{body['id']}/", headers=root)
    again = client.delete(f"/api/auth/invitations/{body['id']}/", headers=root)
    response = register(client, "revoked", email="revoked@example.com", invitation=body["token"])

    assert revoked.status_code == 204
    assert revoked.content == b""
    assert again.status_code == 404
    _invitation_error(response, "This invitation has been revoked.")
    listed = client.get("/api/auth/invitations/", headers=root).json()
    assert body["id"] not in [invitation["id"] for invitation in listed["results"]]


def test_an_unknown_invitation_is_refused(client: httpx.Client, register: Register) -> None:
    for token in ("not-a-token", "x" * 10_000):
        response = register(client, "nobody", invitation=token)

        _invitation_error(response, "Invalid invitation.")


def test_the_email_must_be_the_invited_one_case_insensitively(
    client: httpx.Client, invite: Invite, register: Register
) -> None:
    token = invite(client, "Dr.Who@Example.com")

    other = register(client, "impostor", email="someone@example.com", invitation=token)
    same = register(client, "drwho", email="dr.who@EXAMPLE.com", invitation=token)

    _invitation_error(other, "This invitation is for another email address.")
    assert same.status_code == 201, same.text


def test_with_an_invitation_x_tenant_is_not_looked_up(
    client: httpx.Client, invite: Invite, register: Register
) -> None:
    # The tenants service is unreachable here: a lookup of X-Tenant would be a 503.
    token = invite(client, "guest@example.com")

    response = register(
        client, "guest", email="guest@example.com", tenant="clinic_elsewhere", invitation=token
    )

    assert response.status_code == 201, response.text
    assert response.json()["tenant"] == "public"


def test_an_invitation_into_a_tenant_deleted_since_is_refused(
    tenants: Callable[..., Tenancy],
    register: Register,
    invite: Invite,
) -> None:
    service = tenants()
    tenant = service.registry.create("clinic_x")
    token = invite(service.auth, "gone@example.com", tenant=tenant["schema_name"])
    service.registry.delete(tenant)

    response = register(service.auth, "gone", email="gone@example.com", invitation=token)

    assert response.status_code == 400
    assert response.json() == {"tenant": [f'Unknown or inactive tenant "{tenant["schema_name"]}".']}


# ---- who may invite, and where ------------------------------------------------------------


def test_a_tenant_admin_invites_into_its_own_tenant_only(
    client: httpx.Client, admin: dict[str, str]
) -> None:
    own = _invite(client, admin, email="new@example.com", role="admin")
    named = _invite(client, admin, email="new2@example.com", role="staff", tenant="public")
    elsewhere = _invite(client, admin, email="new3@example.com", role="admin", tenant="clinic_b")

    assert own.status_code == 201
    assert own.json()["tenant"] == "public"
    assert named.status_code == 201
    assert elsewhere.status_code == 400
    assert elsewhere.json() == {"tenant": ["Only a superuser can invite into another tenant."]}


def test_a_superuser_cannot_invite_into_an_unknown_tenant(
    tenants: Callable[..., Tenancy], auth_header: Header, superuser: tuple[str, str]
) -> None:
    service = tenants()
    root = auth_header(service.auth, *superuser)

    for name in ("nosuchpractice", "Not A Schema"):
        response = _invite(service.auth, root, email="x@example.com", role="admin", tenant=name)

        assert response.status_code == 400, name
        assert response.json() == {"tenant": [f'Unknown or inactive tenant "{name}".']}


def test_staff_cannot_invite_list_or_revoke(
    client: httpx.Client, make_user: MakeUser, auth_header: Header, root: dict[str, str]
) -> None:
    make_user("staff_a")
    staff = auth_header(client, "staff_a")
    invitation = _invite(client, root, email="s@example.com", role="staff").json()

    responses = [
        _invite(client, staff, email="s2@example.com", role="staff"),
        client.get("/api/auth/invitations/", headers=staff),
        client.delete(f"/api/auth/invitations/{invitation['id']}/", headers=staff),
    ]

    for response in responses:
        assert response.status_code == 403
        assert response.json() == FORBIDDEN


def test_invitations_need_a_token(client: httpx.Client) -> None:
    responses = [
        client.post("/api/auth/invitations/", json={"email": "a@example.com", "role": "staff"}),
        client.get("/api/auth/invitations/"),
        client.delete("/api/auth/invitations/1/"),
    ]

    for response in responses:
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_invalid_invitations_are_a_400_on_the_field(
    client: httpx.Client, root: dict[str, str]
) -> None:
    required = ["This field is required."]
    cases = [
        ({}, {"email": required, "role": required}),
        ({"email": "not-an-email", "role": "staff"}, {"email": ["Enter a valid email address."]}),
        ({"email": "a@example.com", "role": "owner"}, {"role": ['"owner" is not a valid choice.']}),
        (
            {"email": "a@example.com", "role": "staff", "tenant": "pub\x00lic"},
            {"tenant": ["Null characters are not allowed."]},
        ),
        (
            {"email": "a\x00@example.com", "role": "staff"},
            {"email": ["Null characters are not allowed."]},
        ),
    ]
    for body, errors in cases:
        response = client.post("/api/auth/invitations/", json=body, headers=root)

        assert response.status_code == 400, body
        assert response.json() == errors, body


# ---- listing and revoking -----------------------------------------------------------------


def test_an_admin_lists_its_tenants_open_invitations_without_tokens(
    tenants: Callable[..., Tenancy],
    auth_header: Header,
    superuser: tuple[str, str],
    make_user: MakeUser,
    register: Register,
) -> None:
    service = tenants()
    client = service.auth
    root = auth_header(client, *superuser)
    other = service.registry.create("clinic_l")["schema_name"]
    make_user("admin_l", role=Role.ADMIN)
    admin = auth_header(client, "admin_l")
    mine = [
        _invite(client, admin, email=f"m{index}@example.com", role="staff").json()
        for index in range(3)
    ]
    theirs = _invite(client, root, email="t@example.com", role="admin", tenant=other).json()
    used = _invite(client, admin, email="used@example.com", role="staff").json()
    register(client, "used", email="used@example.com", invitation=used["token"])

    listed = client.get("/api/auth/invitations/?page_size=2&ordering=id", headers=admin)
    everyone = client.get("/api/auth/invitations/", headers=root).json()
    one_tenant = client.get("/api/auth/invitations/", params={"tenant": other}, headers=root)
    searched = client.get("/api/auth/invitations/?search=M1@EXAMPLE", headers=admin).json()

    assert listed.status_code == 200
    page = listed.json()
    assert page["count"] == 3  # the used one is no longer open; another tenant's is not shown
    assert [i["id"] for i in page["results"]] == [mine[0]["id"], mine[1]["id"]]
    assert page["next"] == f"{client.base_url}/api/auth/invitations/?page_size=2&ordering=id&page=2"
    assert set(page["results"][0]) == {
        "id", "email", "role", "tenant", "expires_at", "created_at", "updated_at",
    }  # fmt: skip
    assert {i["id"] for i in everyone["results"]} >= {theirs["id"], *(m["id"] for m in mine)}
    assert [i["id"] for i in one_tenant.json()["results"]] == [theirs["id"]]
    assert [i["email"] for i in searched["results"]] == ["m1@example.com"]


def test_another_tenants_invitation_is_a_404_to_an_admin(
    tenants: Callable[..., Tenancy],
    auth_header: Header,
    superuser: tuple[str, str],
    make_user: MakeUser,
) -> None:
    service = tenants()
    client = service.auth
    other = service.registry.create("clinic_d")["schema_name"]
    root = auth_header(client, *superuser)
    make_user("admin_d", role=Role.ADMIN)
    theirs = _invite(client, root, email="t@example.com", role="admin", tenant=other).json()

    response = client.delete(
        f"/api/auth/invitations/{theirs['id']}/", headers=auth_header(client, "admin_d")
    )

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert client.delete(f"/api/auth/invitations/{theirs['id']}/", headers=root).status_code == 204


def test_unknown_and_out_of_range_ids_are_a_404(client: httpx.Client, root: dict[str, str]) -> None:
    for invitation_id in ("999999", "abc", str(2**31), str(2**63)):
        response = client.delete(f"/api/auth/invitations/{invitation_id}/", headers=root)

        assert response.status_code == 404, invitation_id
        assert response.json() == NOT_FOUND


# ---- for operators: the dentiapro CLI -----------------------------------------------------


def test_an_operator_invites_without_a_token_and_the_invitation_works(
    auth_settings: Callable[..., AuthSettings], client: httpx.Client, register: Register
) -> None:
    created = invite_from_the_cli(
        auth_settings(), email="owner@example.com", role="admin", tenant="public"
    )

    response = register(client, "owner", email="owner@example.com", invitation=created.token)

    assert (created.email, created.role, created.tenant) == ("owner@example.com", "admin", "public")
    assert response.status_code == 201, response.text
    assert (response.json()["role"], response.json()["is_active"]) == ("admin", True)


def test_the_operator_function_refuses_what_the_api_refuses(
    auth_settings: Callable[..., AuthSettings],
) -> None:
    for email, role, tenant in (
        ("not-an-email", "admin", "public"),
        ("a@example.com", "owner", "public"),
        ("a@example.com", "admin", "Not A Schema"),
    ):
        with pytest.raises(ValidationError):
            invite_from_the_cli(auth_settings(), email=email, role=role, tenant=tenant)
