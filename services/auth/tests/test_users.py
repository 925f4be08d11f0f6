"""GET /api/auth/users/ and PATCH /api/auth/users/<id>/: tenant admins and superusers.

The caller's tenant is the default one (its users log in without a tenants service);
``clinic_b`` is the other tenant, whose users are only ever targets here.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from auth.models import Role, User, utcnow
from sqlmodel import Session, col, select

MakeUser = Callable[..., User]
Header = Callable[..., dict[str, str]]
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
NOT_FOUND = {"detail": "Not found."}
INVALID_PAGE = {"detail": "Invalid page."}


@pytest.fixture
def people(make_user: MakeUser) -> dict[str, User]:
    return {
        "admin": make_user("admin_a", role=Role.ADMIN),
        "staff": make_user("staff_a"),
        "pending": make_user("pending_a", is_active=False),
        "other_admin": make_user("admin_b", tenant="clinic_b", role=Role.ADMIN),
        "other_staff": make_user("staff_b", tenant="clinic_b"),
    }


@pytest.fixture
def as_admin(client: httpx.Client, auth_header: Header, people: dict[str, User]) -> dict[str, str]:
    return auth_header(client, "admin_a")


@pytest.fixture
def as_staff(client: httpx.Client, auth_header: Header, people: dict[str, User]) -> dict[str, str]:
    return auth_header(client, "staff_a")


@pytest.fixture
def as_superuser(
    client: httpx.Client, auth_header: Header, superuser: tuple[str, str]
) -> dict[str, str]:
    return auth_header(client, *superuser)


def _usernames(response: httpx.Response) -> list[str]:
    return [user["username"] for user in response.json()["results"]]


# ---- list ---------------------------------------------------------------------------------


def test_admin_lists_the_users_of_its_own_tenant_only(
    client: httpx.Client, as_admin: dict[str, str]
) -> None:
    response = client.get("/api/auth/users/", headers=as_admin)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    # The platform superuser shares the default tenant but is not the tenant's to manage.
    assert _usernames(response) == ["admin_a", "staff_a", "pending_a"]
    assert set(body["results"][0]) == {
        "id", "username", "email", "tenant", "role", "is_active", "is_superuser", "date_joined",
        "updated_at",
    }  # fmt: skip


def test_admin_cannot_list_another_tenant_with_the_tenant_parameter(
    client: httpx.Client, as_admin: dict[str, str]
) -> None:
    response = client.get("/api/auth/users/?tenant=clinic_b", headers=as_admin)

    assert response.status_code == 200
    assert "admin_b" not in _usernames(response)


def test_superuser_lists_every_tenant_and_can_filter_by_one(
    client: httpx.Client, as_superuser: dict[str, str], people: dict[str, User]
) -> None:
    everyone = client.get("/api/auth/users/", headers=as_superuser)
    clinic_b = client.get("/api/auth/users/", params={"tenant": "clinic_b"}, headers=as_superuser)

    assert everyone.status_code == 200
    assert everyone.json()["count"] == 6
    assert "platform-root" in _usernames(everyone)
    assert _usernames(clinic_b) == ["admin_b", "staff_b"]
    assert {user["tenant"] for user in clinic_b.json()["results"]} == {"clinic_b"}


def test_staff_cannot_list_users(client: httpx.Client, as_staff: dict[str, str]) -> None:
    response = client.get("/api/auth/users/", headers=as_staff)

    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_listing_users_needs_a_token(client: httpx.Client) -> None:
    response = client.get("/api/auth/users/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_users_are_paginated_with_absolute_links(
    client: httpx.Client, as_admin: dict[str, str], make_user: MakeUser
) -> None:
    for index in range(3):
        make_user(f"extra{index}")  # six users in the tenant now

    first = client.get("/api/auth/users/?page_size=4", headers=as_admin)
    second = client.get(first.json()["next"], headers=as_admin)

    assert first.json()["count"] == 6
    assert len(first.json()["results"]) == 4
    assert first.json()["next"] == f"{client.base_url}/api/auth/users/?page_size=4&page=2"
    assert first.json()["previous"] is None
    assert _usernames(second) == ["extra1", "extra2"]
    assert second.json()["next"] is None
    assert second.json()["previous"] == f"{client.base_url}/api/auth/users/?page_size=4"


def test_page_links_use_the_scheme_and_host_the_client_used_at_the_gateway(
    client: httpx.Client, as_admin: dict[str, str]
) -> None:
    headers = {**as_admin, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.test"}

    response = client.get("/api/auth/users/?page_size=1", headers=headers)

    assert response.json()["next"] == "https://api.example.test/api/auth/users/?page_size=1&page=2"


def test_invalid_pages_are_a_404(client: httpx.Client, as_admin: dict[str, str]) -> None:
    for page in ["0", "-1", "abc", "2", "99999999999999999999", "first"]:
        response = client.get("/api/auth/users/", params={"page": page}, headers=as_admin)

        assert response.status_code == 404, page
        assert response.json() == INVALID_PAGE


def test_page_size_is_capped_at_200_and_a_bad_one_is_a_400(
    client: httpx.Client, as_superuser: dict[str, str], db: Session
) -> None:
    now = utcnow()
    db.add_all(
        User(
            username=f"bulk{index}",
            username_key=f"bulk{index}",
            email=f"bulk{index}@example.com",
            tenant="clinic_c",
            password_hash="not-a-hash",
            date_joined=now,
            updated_at=now,
        )
        for index in range(205)
    )
    db.commit()

    capped = client.get("/api/auth/users/?tenant=clinic_c&page_size=1000", headers=as_superuser)
    bad = client.get("/api/auth/users/?tenant=clinic_c&page_size=zero", headers=as_superuser)
    default = client.get("/api/auth/users/?tenant=clinic_c", headers=as_superuser)

    assert capped.json()["count"] == 205
    assert len(capped.json()["results"]) == 200
    assert len(default.json()["results"]) == 50
    # DESIGN.md: a parameter that should be a number and is not one is a 400 on it.
    assert bad.status_code == 400
    assert bad.json() == {"page_size": ["A valid integer is required."]}


def test_the_last_page_is_reachable_by_name(
    client: httpx.Client, as_admin: dict[str, str], make_user: MakeUser
) -> None:
    for index in range(3):
        make_user(f"extra{index}")  # six users in the tenant now

    response = client.get("/api/auth/users/?page_size=4&page=last", headers=as_admin)

    assert response.status_code == 200
    assert _usernames(response) == ["extra1", "extra2"]
    assert response.json()["previous"] == f"{client.base_url}/api/auth/users/?page_size=4"


def test_search_looks_in_username_and_email_case_insensitively(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User], db: Session
) -> None:
    staff = db.get(User, people["staff"].id)
    assert staff is not None
    staff.email = "Rosa.Parks@Clinic.example"
    db.add(staff)
    db.commit()

    by_email = client.get("/api/auth/users/", params={"search": "rosa.PARKS"}, headers=as_admin)
    by_name = client.get("/api/auth/users/", params={"search": "PENDING"}, headers=as_admin)
    both_terms = client.get("/api/auth/users/", params={"search": "staff clinic"}, headers=as_admin)
    wildcard = client.get("/api/auth/users/", params={"search": "%_"}, headers=as_admin)

    assert _usernames(by_email) == ["staff_a"]
    assert _usernames(by_name) == ["pending_a"]
    assert _usernames(both_terms) == ["staff_a"]
    assert by_email.json()["count"] == 1
    assert _usernames(wildcard) == []  # LIKE wildcards are matched literally


def test_search_terms_are_normalised_as_usernames_are(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    # Fullwidth letters fold to the stored NFKC, case-folded username.
    response = client.get(
        "/api/auth/users/", params={"search": "\uff33\uff34\uff21\uff26\uff26"}, headers=as_admin
    )

    assert _usernames(response) == ["staff_a"]


def test_superusers_order_users_by_tenant(
    client: httpx.Client, as_superuser: dict[str, str], people: dict[str, User]
) -> None:
    response = client.get(
        "/api/auth/users/", params={"ordering": "tenant,-is_superuser"}, headers=as_superuser
    )

    listed = [(user["tenant"], not user["is_superuser"]) for user in response.json()["results"]]
    assert listed == sorted(listed)
    assert listed[0][0] == "clinic_b"


def test_search_stays_within_the_admins_tenant(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    response = client.get("/api/auth/users/", params={"search": "admin"}, headers=as_admin)

    assert _usernames(response) == ["admin_a"]  # not admin_b, nor the superuser


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("username", ["admin_a", "pending_a", "staff_a"]),
        ("-username", ["staff_a", "pending_a", "admin_a"]),
        ("is_active,username", ["pending_a", "admin_a", "staff_a"]),
        ("-id", ["pending_a", "staff_a", "admin_a"]),
        ("password_hash,unknown", ["admin_a", "staff_a", "pending_a"]),  # ignored, as in DRF
    ],
)
def test_ordering_on_listed_fields(
    client: httpx.Client, as_admin: dict[str, str], ordering: str, expected: list[str]
) -> None:
    response = client.get("/api/auth/users/", params={"ordering": ordering}, headers=as_admin)

    assert response.status_code == 200
    assert _usernames(response) == expected


def test_updated_after_lists_the_users_changed_since(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    changed = client.patch(
        f"/api/auth/users/{people['pending'].id}/", json={"is_active": True}, headers=as_admin
    ).json()
    since = datetime.fromisoformat(changed["updated_at"])
    as_naive_utc = since.astimezone(UTC).replace(tzinfo=None).isoformat()
    as_other_offset = since.astimezone(timezone(timedelta(hours=-5))).isoformat()

    for value in (changed["updated_at"], as_naive_utc, as_other_offset):
        response = client.get("/api/auth/users/", params={"updated_after": value}, headers=as_admin)
        assert _usernames(response) == ["pending_a"], value
    later = (since + timedelta(microseconds=1)).isoformat()
    response = client.get("/api/auth/users/", params={"updated_after": later}, headers=as_admin)
    assert response.json()["count"] == 0


def test_a_bad_updated_after_is_a_400_on_the_parameter(
    client: httpx.Client, as_admin: dict[str, str]
) -> None:
    for value in ("yesterday", "2026-13-01T00:00", "0001-01-01T00:00+01:00", "2026-01-01"):
        response = client.get("/api/auth/users/", params={"updated_after": value}, headers=as_admin)

        assert response.status_code == 400, value
        assert response.json() == {"updated_after": ["Enter a valid date/time."]}


# ---- update -------------------------------------------------------------------------------


def test_admin_activates_a_pending_user_of_its_tenant(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    response = client.patch(
        f"/api/auth/users/{people['pending'].id}/", json={"is_active": True}, headers=as_admin
    )

    assert response.status_code == 200
    assert response.json()["is_active"] is True
    assert response.json()["username"] == "pending_a"


def test_admin_changes_roles_and_deactivates_users(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    url = f"/api/auth/users/{people['staff'].id}/"

    promoted = client.patch(url, json={"role": "admin"}, headers=as_admin)
    both = client.patch(url, json={"role": "staff", "is_active": False}, headers=as_admin)

    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    assert both.json()["role"] == "staff"
    assert both.json()["is_active"] is False


def test_an_empty_patch_changes_nothing(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    response = client.patch(f"/api/auth/users/{people['staff'].id}/", json={}, headers=as_admin)

    assert response.status_code == 200
    assert response.json()["role"] == "staff"
    assert response.json()["is_active"] is True


def test_invalid_values_are_a_400(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    url = f"/api/auth/users/{people['staff'].id}/"
    cases = [
        ({"role": "owner"}, {"role": ['"owner" is not a valid choice.']}),
        ({"role": None}, {"role": ["This field may not be null."]}),
        ({"is_active": None}, {"is_active": ["This field may not be null."]}),
        ({"is_active": "perhaps"}, {"is_active": ["Must be a valid boolean."]}),
    ]
    for body, errors in cases:
        response = client.patch(url, json=body, headers=as_admin)

        assert response.status_code == 400, body
        assert response.json() == errors, body


def test_admin_cannot_deactivate_or_demote_itself(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    url = f"/api/auth/users/{people['admin'].id}/"

    deactivate = client.patch(url, json={"is_active": False}, headers=as_admin)
    demote = client.patch(url, json={"role": "staff"}, headers=as_admin)

    assert deactivate.status_code == 400
    assert deactivate.json() == {"is_active": ["You cannot deactivate your own account."]}
    assert demote.status_code == 400
    assert demote.json() == {"role": ["You cannot remove your own admin role."]}


def test_users_of_other_tenants_are_a_404_for_a_tenant_admin(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    response = client.patch(
        f"/api/auth/users/{people['other_staff'].id}/", json={"is_active": False}, headers=as_admin
    )

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_the_superuser_is_a_404_for_a_tenant_admin(
    client: httpx.Client, as_admin: dict[str, str], db: Session
) -> None:
    root = db.exec(select(User).where(col(User.is_superuser).is_(True))).one()

    response = client.patch(
        f"/api/auth/users/{root.id}/", json={"is_active": False}, headers=as_admin
    )

    assert response.status_code == 404


def test_unknown_and_non_numeric_ids_are_a_404(
    client: httpx.Client, as_admin: dict[str, str]
) -> None:
    for user_id in ["999999", "abc"]:
        response = client.patch(f"/api/auth/users/{user_id}/", json={}, headers=as_admin)

        assert response.status_code == 404, user_id
        assert response.json() == NOT_FOUND


def test_a_user_id_spelled_other_than_in_digits_names_nothing(
    client: httpx.Client, as_admin: dict[str, str], people: dict[str, User]
) -> None:
    user = people["staff"].id
    assert client.patch(f"/api/auth/users/{user}/", json={}, headers=as_admin).status_code == 200
    for spelled in (f"{user}.0", f"+{user}", f"%20{user}"):
        response = client.patch(f"/api/auth/users/{spelled}/", json={}, headers=as_admin)
        assert response.status_code == 404, spelled


def test_staff_cannot_update_users(
    client: httpx.Client, as_staff: dict[str, str], people: dict[str, User]
) -> None:
    response = client.patch(
        f"/api/auth/users/{people['pending'].id}/", json={"is_active": True}, headers=as_staff
    )

    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_updating_users_needs_a_token(client: httpx.Client, people: dict[str, User]) -> None:
    response = client.patch(f"/api/auth/users/{people['pending'].id}/", json={"is_active": True})

    assert response.status_code == 401


def test_superuser_updates_users_of_any_tenant(
    client: httpx.Client, as_superuser: dict[str, str], people: dict[str, User]
) -> None:
    response = client.patch(
        f"/api/auth/users/{people['other_staff'].id}/",
        json={"role": "admin"},
        headers=as_superuser,
    )

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert response.json()["tenant"] == "clinic_b"


def test_a_deactivated_admin_loses_access_at_once(
    client: httpx.Client,
    as_superuser: dict[str, str],
    as_admin: dict[str, str],
    people: dict[str, User],
) -> None:
    client.patch(
        f"/api/auth/users/{people['admin'].id}/", json={"is_active": False}, headers=as_superuser
    )

    response = client.get("/api/auth/users/", headers=as_admin)

    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/auth/users/", "/api/auth/invitations/"])
def test_a_tenant_filter_with_a_nul_character_is_a_400(
    client: httpx.Client, as_superuser: dict[str, str], path: str
) -> None:
    # The document allows any text but NUL there: PostgreSQL refuses it in a parameter.
    response = client.get(path, params={"tenant": "pub\x00lic"}, headers=as_superuser)

    assert response.status_code == 400
    assert response.json() == {"tenant": ["Null characters are not allowed."]}
