"""Password hashing (Argon2id) and the rules a new password must pass (Django's validators)."""

import re
from difflib import SequenceMatcher
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_SIMILARITY = 0.7
# Shorter names ("al") occur inside too many good passwords to be worth refusing.
MIN_CONTAINED_LENGTH = 3

# argon2-cffi's defaults are Argon2id with RFC 9106's low-memory parameters.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def dummy_hash() -> str:
    """A hash of nothing anyone knows, verified for unknown users so they cost the same time."""
    return _hasher.hash("dentiapro-no-such-user")


@cache
def common_passwords() -> frozenset[str]:
    text = files("auth").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def _too_similar(password: str, value: str) -> bool:
    password = password.lower()
    value = value.lower()
    parts = {value, *re.split(r"\W+", value)}
    for part in parts:
        if len(part) >= MIN_CONTAINED_LENGTH and part in password:
            return True
        if part and SequenceMatcher(a=password, b=part).ratio() >= MAX_SIMILARITY:
            return True
    return False


def password_problems(password: str, *, username: str | None, email: str | None) -> list[str]:
    """The reasons ``password`` is refused, in Django's words; empty when it is acceptable."""
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
