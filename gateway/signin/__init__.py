"""Sign-in's configuration, built once per process by the wiring point
(`gateway.bootstrap.sign_in`): the lockout policy and session limits from the settings, and the
OIDC client when a provider is configured (`gateway.signin.oidc`). See docs/signin.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.credentials import Policy, SessionLimits
from gateway.signin.oidc import OidcClient


@dataclass(frozen=True)
class SignIn:
    policy: Policy
    limits: SessionLimits
    # None: no OIDC provider configured (the OIDC endpoints answer 404).
    oidc: OidcClient | None
