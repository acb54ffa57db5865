"""Who is calling the ops API, and in which role.

Two kinds of bearer credential:

- **API tokens**, stored hashed (sha256) in ``ERPBRIDGE_OPS_TOKENS``: a JSON map of token name ->
  ``{"role": ..., "sha256": ...}``. ``erpbridge ops token NAME --role ROLE`` makes one and prints
  the entry to store; the token itself is shown once and kept nowhere.
- **Single sign-on**: a JWT from the configured OIDC issuer (``ERPBRIDGE_OPS_OIDC_ISSUER``),
  signed with a key from its JWKS (a file or a URL), for the configured audience; the role is
  read from a claim (``ERPBRIDGE_OPS_OIDC_ROLE_CLAIM``, default ``erpbridge_role``).

Wrong or missing credentials are refused (401); a role short of what an action needs, 403.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops.audit import Actor, Role


class StoredToken(BaseModel):
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class OpsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_OPS_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8091, ge=0, le=65535)
    tokens: dict[str, StoredToken] = Field(default_factory=dict)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_file: Path | None = None
    oidc_jwks_url: str | None = None
    oidc_role_claim: str = "erpbridge_role"
    oidc_user_claim: str = "preferred_username"

    @field_validator("oidc_jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://127.0.0.1",
                                                       "http://localhost")):  # fmt: skip
            raise ValueError("the JWKS URL must be https (or a local http one)")
        return value


class Unauthorized(Exception):
    """No credential, or one we do not accept (401)."""


class Forbidden(Exception):
    """A credential whose role is short of what the action needs (403)."""


def new_token(role: Role) -> tuple[str, StoredToken]:
    """A fresh random token and what to store for it (its hash, never the token)."""
    token = "ebt_" + secrets.token_urlsafe(32)
    return token, StoredToken(role=role, sha256=hashlib.sha256(token.encode()).hexdigest())


@dataclass
class Authenticator:
    config: OpsSettings
    _keys: KeySet | None = None
    _keys_at: float = 0.0

    def actor(self, authorization: str | None) -> Actor:
        """The caller behind an ``Authorization`` header (or the console's cookie value)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("send Authorization: Bearer <token>")
        credential = authorization.removeprefix("Bearer ").strip()
        if credential.count(".") == 2 and self.config.oidc_issuer:
            return self._from_jwt(credential)
        digest = hashlib.sha256(credential.encode()).hexdigest()
        for name, stored in self.config.tokens.items():
            if hmac.compare_digest(stored.sha256, digest):
                return Actor(f"token:{name}", stored.role)
        raise Unauthorized("unknown token")

    def _from_jwt(self, credential: str) -> Actor:
        config = self.config
        try:
            token = jwt.decode(credential, self._key_set())
            claims: dict[str, Any] = dict(token.claims)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": config.oidc_issuer},
                "exp": {"essential": True},
            }
            if config.oidc_audience:
                options["aud"] = {"essential": True, "value": config.oidc_audience}
            jwt.JWTClaimsRegistry(**options).validate(claims)
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"the single sign-on token is not accepted: {exc}") from None
        try:
            role = Role(str(claims.get(config.oidc_role_claim, "")))
        except ValueError:
            raise Forbidden(f"the token's {config.oidc_role_claim!r} claim names no role "
                            f"({', '.join(Role)})") from None  # fmt: skip
        user = claims.get(config.oidc_user_claim) or claims.get("sub") or "?"
        return Actor(f"sso:{user}", role)

    def _key_set(self) -> KeySet:
        if self._keys is None or time.monotonic() - self._keys_at > 300:
            config = self.config
            if config.oidc_jwks_file is not None:
                document = json.loads(config.oidc_jwks_file.read_text(encoding="utf-8"))
            elif config.oidc_jwks_url is not None:
                document = httpx.get(config.oidc_jwks_url, timeout=10).json()
            else:
                raise Unauthorized("single sign-on is configured without a JWKS")
            self._keys, self._keys_at = KeySet.import_key_set(document), time.monotonic()
        return self._keys


def require(actor: Actor, role: Role) -> None:
    if not actor.role.allows(role):
        raise Forbidden(f"{actor.name} is {actor.role}; this needs {role}")
