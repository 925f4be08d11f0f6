"""Refresh rotation and reuse detection, logout."""

import threading
import time
from collections.abc import Callable

import httpx
import jwt
from auth.models import Role, User
from common.testing import TestSigner

StartAuth = Callable[..., httpx.Client]
MakeUser = Callable[..., User]
Login = Callable[..., dict[str, str]]
INVALID = {"detail": "Token is invalid or expired", "code": "token_not_valid"}
REVOKED = {"detail": "Token is blacklisted", "code": "token_not_valid"}


def _refresh(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/auth/refresh/", json={"refresh": token})


def _logout(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/auth/logout/", json={"refresh": token})


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


# ---- refresh ------------------------------------------------------------------------------


def test_refresh_returns_a_new_pair_and_revokes_the_old_refresh_token(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("ada")
    first = login(client, "ada")

    response = _refresh(client, first["refresh"])

    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert _claims(second["access"])["token_type"] == "access"
    assert _claims(second["refresh"])["token_type"] == "refresh"
    me = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {second['access']}"})
    assert me.status_code == 200


def test_rotated_tokens_keep_working_down_the_chain(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("ben")
    token = login(client, "ben")["refresh"]

    for _ in range(3):
        response = _refresh(client, token)
        assert response.status_code == 200
        token = response.json()["refresh"]


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("cy")
    stolen = login(client, "cy")["refresh"]
    current = _refresh(client, stolen).json()["refresh"]

    replay = _refresh(client, stolen)

    assert replay.status_code == 401
    assert replay.json() == REVOKED
    assert replay.headers["WWW-Authenticate"].startswith("Bearer")
    # The legitimate holder's newest token died with its family.
    assert _refresh(client, current).status_code == 401


def test_reuse_in_one_family_leaves_other_sessions_alone(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("dee")
    phone = login(client, "dee")["refresh"]
    laptop = login(client, "dee")["refresh"]
    _refresh(client, phone)
    _refresh(client, phone)

    assert _refresh(client, laptop).status_code == 200


def test_concurrent_uses_of_one_refresh_token_succeed_at_most_once(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("ely")
    token = login(client, "ely")["refresh"]
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def use() -> None:
        with httpx.Client(base_url=client.base_url, timeout=30) as own:
            barrier.wait()
            statuses.append(_refresh(own, token).status_code)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(200) <= 1
    assert statuses.count(401) >= 2


def _at_once(*calls: Callable[[httpx.Client], httpx.Response], base_url: str) -> list[int]:
    """Run ``calls`` from parallel threads released together; their status codes, in order."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as own:
            barrier.wait()
            statuses[index] = calls[index](own).status_code

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_a_family_revocation_racing_a_refresh_also_revokes_the_token_it_issues(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    """Logout (or a replayed token) revokes the family while a refresh of the same family is
    rotating: whichever wins, no refresh token of that family may work afterwards. Marking
    the old token used and recording the new one in two transactions let the new one escape
    a revocation that landed in between."""
    make_user("race")
    escaped = 0
    for _ in range(40):
        token = login(client, "race")["refresh"]
        issued: list[str] = []

        def rotate(
            own: httpx.Client, token: str = token, issued: list[str] = issued
        ) -> httpx.Response:
            response = _refresh(own, token)
            if response.status_code == 200:
                issued.append(response.json()["refresh"])
            return response

        def revoke(own: httpx.Client, token: str = token) -> httpx.Response:
            return _logout(own, token)

        _at_once(rotate, revoke, revoke, base_url=str(client.base_url))

        escaped += sum(_refresh(client, new).status_code == 200 for new in issued)
    assert escaped == 0, f"{escaped} refresh tokens escaped their family's revocation"


def test_refresh_refuses_an_access_token(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("fay")

    response = _refresh(client, login(client, "fay")["access"])

    assert response.status_code == 401
    assert response.json() == INVALID


def test_refresh_refuses_garbage_and_foreign_tokens(client: httpx.Client) -> None:
    foreign = TestSigner().mint(token_type="refresh")
    for token in ["garbage", "a.b.c", foreign]:
        response = _refresh(client, token)

        assert response.status_code == 401, token
        assert response.json() == INVALID


def test_refresh_refuses_an_expired_refresh_token(
    start_auth: StartAuth, make_user: MakeUser, login: Login
) -> None:
    client = start_auth(refresh_token_lifetime=1)
    make_user("gil")
    token = login(client, "gil")["refresh"]
    time.sleep(2.1)

    response = _refresh(client, token)

    assert response.status_code == 401
    assert response.json() == INVALID


def test_refresh_without_the_field_is_a_400(client: httpx.Client) -> None:
    for body, errors in [
        ({}, {"refresh": ["This field is required."]}),
        ({"refresh": ""}, {"refresh": ["This field may not be blank."]}),
    ]:
        response = client.post("/api/auth/refresh/", json=body)

        assert response.status_code == 400
        assert response.json() == errors


def test_refresh_is_refused_once_the_user_is_deactivated(
    client: httpx.Client,
    make_user: MakeUser,
    login: Login,
    auth_header: Callable[..., dict[str, str]],
) -> None:
    make_user("hal", role=Role.ADMIN)
    ida = make_user("ida")
    token = login(client, "ida")["refresh"]
    client.patch(
        f"/api/auth/users/{ida.id}/", json={"is_active": False}, headers=auth_header(client, "hal")
    )

    response = _refresh(client, token)

    assert response.status_code == 401
    assert response.json() == INVALID


def test_refresh_carries_a_changed_role_into_the_new_access_token(
    client: httpx.Client,
    make_user: MakeUser,
    login: Login,
    auth_header: Callable[..., dict[str, str]],
) -> None:
    make_user("jo", role=Role.ADMIN)
    kai = make_user("kai")
    token = login(client, "kai")["refresh"]
    client.patch(
        f"/api/auth/users/{kai.id}/", json={"role": "admin"}, headers=auth_header(client, "jo")
    )

    access = _refresh(client, token).json()["access"]

    assert _claims(access)["role"] == "admin"


# ---- logout -------------------------------------------------------------------------------


def test_logout_revokes_the_family_without_an_access_token(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("lea")
    first = login(client, "lea")["refresh"]
    newest = _refresh(client, first).json()["refresh"]

    response = _logout(client, newest)

    assert response.status_code == 204
    assert response.content == b""
    assert _refresh(client, newest).status_code == 401


def test_access_tokens_live_until_they_expire_after_logout(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    # As in simplejwt: access tokens are short-lived and not checked against revocation.
    make_user("meg")
    tokens = login(client, "meg")
    _logout(client, tokens["refresh"])

    me = client.get("/api/auth/me/", headers={"Authorization": f"Bearer {tokens['access']}"})

    assert me.status_code == 200


def test_logout_twice_is_a_401(client: httpx.Client, make_user: MakeUser, login: Login) -> None:
    make_user("max")
    token = login(client, "max")["refresh"]
    _logout(client, token)

    response = _logout(client, token)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_logout_refuses_invalid_tokens(
    client: httpx.Client, make_user: MakeUser, login: Login
) -> None:
    make_user("ned")
    access = login(client, "ned")["access"]
    for token in ["garbage", access]:
        response = _logout(client, token)

        assert response.status_code == 401
        assert response.json() == INVALID


def test_logout_without_the_field_is_a_400(client: httpx.Client) -> None:
    response = client.post("/api/auth/logout/", json={})

    assert response.status_code == 400
    assert response.json() == {"refresh": ["This field is required."]}
