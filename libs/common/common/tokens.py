"""JWT verification against the auth service's public keys (JWKS).

Only auth holds a private key; every other process verifies with the JWKS, cached and
refetched when a token names an unknown ``kid`` (at most once per ``refetch_interval``, so a
flood of forged kids cannot hammer auth). Algorithms come from the key, never from the token
header: ``alg: none``, HS256-with-the-public-key and other confusion are rejected.
Verified tokens are cached until their ``exp``. Everything runs on the event loop: the JWKS
is fetched with an async client, and only by a request whose token names a key not held yet.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request

from common.background import in_background
from common.clients import internal_client
from common.errors import NotAuthenticated, PermissionDenied, ServiceUnavailable, TokenInvalid
from common.openapi import authenticates, raises

log = logging.getLogger("dentiapro.tokens")

ALLOWED_ALGORITHMS = frozenset({"EdDSA", "RS256"})
REQUIRED_CLAIMS = ["exp", "iat", "jti", "sub", "tenant", "token_type", "iss"]
MAX_CACHED_TOKENS = 50_000

JwksSource = Callable[[], Awaitable[dict[str, Any]]]

KEYS_NOT_LOADED = "Signing keys not loaded from auth yet, try again shortly."


class KeysUnavailable(ServiceUnavailable):
    """No key is held yet (auth unreachable since start-up): no token can be judged.

    A 503, not a 401: the token may well be valid, and a client told "invalid" would drop it.
    """

    default_detail = KEYS_NOT_LOADED

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token speaks for."""

    user_id: int
    username: str
    tenant: str
    is_superuser: bool
    role: str
    jti: str
    expires_at: int

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> "Principal":
        return cls(
            user_id=int(claims["sub"]),
            username=str(claims.get("username", "")),
            tenant=str(claims["tenant"]),
            is_superuser=bool(claims.get("is_superuser", False)),
            role=str(claims.get("role", "staff")),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )


class HttpJwksSource:
    """Fetches the JWKS from the auth service over HTTP, on one kept-alive async client."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self._url = url
        self._client = internal_client(timeout=timeout)

    async def __call__(self) -> dict[str, Any]:
        response = await self._client.get(self._url)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    async def aclose(self) -> None:
        await self._client.aclose()


def http_jwks_source(url: str, timeout: float = 3.0) -> HttpJwksSource:
    return HttpJwksSource(url, timeout)


def _fixed(jwks: dict[str, Any]) -> JwksSource:
    async def source() -> dict[str, Any]:
        return jwks

    return source


class TokenVerifier:
    def __init__(
        self, jwks_source: JwksSource, *, issuer: str, refetch_interval: float = 10.0
    ) -> None:
        self._jwks_source = jwks_source
        self._issuer = issuer
        self._refetch_interval = refetch_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        self._last_fetch = float("-inf")
        self._fetching = asyncio.Lock()
        self._verified: dict[str, tuple[dict[str, Any], int]] = {}

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any], *, issuer: str) -> "TokenVerifier":
        """A verifier with fixed keys (auth's own, tests, a JWKS file), loaded at once."""
        verifier = cls(_fixed(jwks), issuer=issuer)
        verifier._install(jwks)
        return verifier

    def _install(self, document: dict[str, Any]) -> None:
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
            if entry.get("kid") and key.algorithm_name in ALLOWED_ALGORITHMS:
                keys[entry["kid"]] = key
        if keys:
            self._keys = keys

    async def refresh_keys(self) -> bool:
        """Fetch the JWKS (at most once per ``refetch_interval``); on failure keep the old keys.

        Returns whether any key is held afterwards. Concurrent callers share one fetch.
        """
        async with self._fetching:
            # Holding no key at all, nothing verifies: retry after a second, not the interval.
            interval = self._refetch_interval if self._keys else min(1.0, self._refetch_interval)
            if time.monotonic() - self._last_fetch < interval:
                return bool(self._keys)
            self._last_fetch = time.monotonic()
            try:
                document = await self._jwks_source()
            except Exception as exc:  # auth down: keep the keys we have
                log.warning("could not fetch JWKS: %s", type(exc).__name__)
                return bool(self._keys)
            self._install(document)
            return bool(self._keys)

    async def aclose(self) -> None:
        """Release the JWKS source's connections (an HTTP source keeps a client open)."""
        close = getattr(self._jwks_source, "aclose", None)
        if callable(close):
            await close()

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def check_keys(self) -> None:
        """Health check: raises while no signing key is held (nothing would verify)."""
        if not self._keys:
            raise KeysUnavailable()

    def _kid(self, token: str) -> str | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        return kid if isinstance(kid, str) else None

    async def verify_async(self, token: str, token_type: str = "access") -> dict[str, Any]:
        """``verify``, fetching the JWKS first when the token names a key not held yet (a
        rotated key), at most once per ``refetch_interval``; ``KeysUnavailable`` while no key
        has ever been loaded."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time() and cached[0]["token_type"] == token_type:
            return cached[0]
        kid = self._kid(token)
        if kid is not None and kid not in self._keys:
            await self.refresh_keys()
        return self.verify(token, token_type)

    def verify(self, token: str, token_type: str = "access") -> dict[str, Any]:
        """Claims of a valid token of ``token_type`` under the keys held now; raises
        ``TokenInvalid`` otherwise (``KeysUnavailable`` when no key is held at all)."""
        now = int(time.time())
        cached = self._verified.get(token)
        if cached is not None and cached[1] > now and cached[0]["token_type"] == token_type:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalid() from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in ALLOWED_ALGORITHMS:
            raise TokenInvalid()
        if not self._keys:
            raise KeysUnavailable()
        key = self._keys.get(kid)
        if key is None or key.algorithm_name != header["alg"]:
            raise TokenInvalid()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenInvalid("Token is expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid() from exc
        if claims.get("token_type") != token_type:
            raise TokenInvalid("Token has wrong type")
        try:
            int(claims["sub"])
        except (TypeError, ValueError) as exc:
            raise TokenInvalid() from exc
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
            if len(self._verified) >= MAX_CACHED_TOKENS:
                self._verified.clear()
        self._verified[token] = (claims, int(claims["exp"]))
        return claims


async def prefetch_keys(verifier: TokenVerifier, interval: float = 1.0) -> None:
    """Fetch the JWKS at start-up, retrying while auth is unreachable (run it as a task).

    A service that has the keys keeps verifying tokens while auth is down later; one that
    would only fetch them on its first request could not, if auth died before that request.
    """
    while not await verifier.refresh_keys():
        await asyncio.sleep(interval)
    log.info("JWKS loaded")


def jwks_health_check(app: FastAPI) -> None:
    """A service's ``jwks`` health check: not ready while ``app.state.token_verifier`` holds
    no signing key (no token would verify)."""
    verifier: TokenVerifier = app.state.token_verifier
    verifier.check_keys()


@asynccontextmanager
async def keys_prefetched(verifier: TokenVerifier, interval: float = 1.0) -> AsyncIterator[None]:
    """Lifespan helper: ``prefetch_keys`` in the background while the app runs; the verifier's
    JWKS client is closed when the app stops."""
    try:
        async with in_background(prefetch_keys(verifier, interval)):
            yield
    finally:
        await verifier.aclose()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None for anything else."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@authenticates
async def get_principal(request: Request) -> Principal:
    """The verified caller; 401 without a valid access token. Dependency for protected routes."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise NotAuthenticated()
    verifier: TokenVerifier = request.app.state.token_verifier
    claims = await verifier.verify_async(token)
    principal = Principal.from_claims(claims)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


@raises(403)
async def require_superuser(principal: CurrentPrincipal) -> Principal:
    if not principal.is_superuser:
        raise PermissionDenied()
    return principal


Superuser = Annotated[Principal, Depends(require_superuser)]
