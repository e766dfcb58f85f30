"""API shapes of identity 身份."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")


class GrantRead(BaseModel):
    role: str
    jurisdiction_code: str


class Me(BaseModel):
    user_id: int | None
    username: str
    role: str
    unit_code: str | None
    grants: list[GrantRead]
    actions: list[str]


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: str
    unit_code: str
    phone: str | None = Field(default=None, description="masked")
    is_active: bool
    totp_enabled: bool
    locked_until: datetime | None
    created_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: str = Field(max_length=32)
    unit_code: str = Field(min_length=4, max_length=32)
    display_name: str = Field(default="", max_length=100)
    phone: str | None = Field(default=None, max_length=20)


class UserCreated(BaseModel):
    user: UserRead
    totp_secret: str | None = Field(default=None, description="shown once, for admins")
    totp_uri: str | None = None


class TotpEnrollment(BaseModel):
    secret: str
    otpauth_uri: str


class TotpConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=8, pattern=r"^\d+$")
