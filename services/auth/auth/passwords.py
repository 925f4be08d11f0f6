"""Password hashing (Argon2id) and the rules a new password must pass (Django's validators)."""

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from difflib import SequenceMatcher
from functools import cache
from importlib.resources import files
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")

MIN_LENGTH = 8
# Longer passwords are refused before any rule runs: every check below stays linear in at
# most this many characters (DESIGN: validation stays well under 100 ms whatever the input).
MAX_LENGTH = 1024
MAX_SIMILARITY = 0.7
# Shorter names ("al") occur inside too many good passwords to be worth refusing.
MIN_CONTAINED_LENGTH = 3


class PasswordHasher:
    """Argon2id hashing with the configured cost, at most ``max_concurrent`` hashes at a time.

    Argon2 has no async form and holds the CPU for tens of milliseconds: hashes run off the
    event loop, on a small pool of their own threads. Each hash allocates its whole memory
    cost; unbounded, a burst of logins multiplies it (ten 64 MiB hashes took auth to 747 MB),
    and glibc keeps the freed blocks in a per-thread arena. So memory is bounded by
    ``max_concurrent`` x the cost, and extra logins queue (the CPU is busy anyway).
    """

    def __init__(
        self, *, time_cost: int, memory_cost: int, parallelism: int, max_concurrent: int = 2
    ) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="argon2")
        # Registrations take at most half the threads (at least one): a burst of them queues
        # here, not in the pool, so a login waits behind one registration's hash at most.
        self._registrations = asyncio.Semaphore(max(1, max_concurrent // 2))
        # Made up front, so even the first unknown username costs one verification, no more.
        self._dummy = self._argon2.hash("dentiapro-no-such-user")

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._argon2.hash, password)

    async def hash_for_registration(self, password: str) -> str:
        """``hash``, sharing the pool with logins without starving them."""
        async with self._registrations:
            return await self.hash(password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spend the work of one verification on nothing (for unknown usernames)."""
        await self.verify(self._dummy, password)


def too_long(limit: int) -> str:
    """DRF's ``max_length`` message."""
    return f"Ensure this field has no more than {limit} characters."


@cache
def common_passwords() -> frozenset[str]:
    text = files("auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def _far_longer(password: str, value: str) -> bool:
    """Whether ``password`` is so much longer than ``value`` that they cannot be similar
    (Django's ``exceeds_maximum_length_ratio``)."""
    return len(password) >= 10 * len(value) and len(value) < MAX_SIMILARITY / 2 * len(password)


def _too_similar(password: str, value: str) -> bool:
    """Django's UserAttributeSimilarityValidator, in its linear form: ``quick_ratio`` (an upper
    bound of ``ratio`` from letter counts) instead of ``ratio``, whose matching costs up to
    len(password) x len(value) per matching block (a 24,000-character password took 8.7 s,
    on the event loop, against a username of repeated letters)."""
    password = password.lower()
    value = value.lower()
    parts = {value, *re.split(r"\W+", value)}
    for part in parts:
        if not part:
            continue
        if len(part) >= MIN_CONTAINED_LENGTH and part in password:
            return True
        if _far_longer(password, part):
            continue
        if SequenceMatcher(a=password, b=part).quick_ratio() >= MAX_SIMILARITY:
            return True
    return False


def password_problems(password: str, *, username: str | None, email: str | None) -> list[str]:
    """The reasons ``password`` is refused, in Django's words; empty when it is acceptable."""
    if len(password) > MAX_LENGTH:
        return [too_long(MAX_LENGTH)]
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(
            f"This password is too short. It must contain at least {MIN_LENGTH} characters."
        )
    if password.strip().lower() in common_passwords():
        problems.append("This password is too common.")
    if password.isdigit():
        problems.append("This password is entirely numeric.")
    if username and _too_similar(password, username):
        problems.append("The password is too similar to the username.")
    elif email and _too_similar(password, email.partition("@")[0]):
        problems.append("The password is too similar to the email address.")
    return problems
