"""Password hashing with Argon2id, and TOTP 动态口令 (RFC 6238)."""

from __future__ import annotations

from functools import lru_cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shiyu.config import get_settings

MIN_PASSWORD_LENGTH = 8


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def hasher() -> PasswordHasher:
    s = get_settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_kib)


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


#: A fixed hash verified against when the user does not exist, so timing does not tell.
@lru_cache(maxsize=1)
def dummy_hash() -> str:
    return hash_password("not-a-real-password")


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable (message code), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return "password_too_short"
    classes = sum(
        [any(c.islower() for c in password), any(c.isupper() for c in password),
         any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
    )
    if classes < 3:
        return "password_too_simple"
    return None


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Shiyu")


def verify_totp(secret: str, code: str) -> bool:
    code = (code or "").strip()
    if not code.isdigit():
        return False
    return pyotp.TOTP(secret).verify(code, valid_window=1)
