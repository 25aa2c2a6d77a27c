from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RegisterIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(max_length=200)
    region: str = "HK"


class RegisterOut(BaseModel):
    user_id: str


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    otp: str | None = Field(default=None, max_length=16)


class LoginOut(BaseModel):
    token: str
    expires_at: datetime


class MeOut(BaseModel):
    user_id: str
    email: str
    name: str
    region: str
    kyc_tier: str
    two_factor: bool
    anti_phishing_code_set: bool
    operator_role: str | None = None
