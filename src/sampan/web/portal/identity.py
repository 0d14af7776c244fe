"""Who acts in the portal and what an applicant registers: the email form, the company record, the principal.

Why a module of its own: these are plain values that pages, the service and the accounts all pass around; keeping
them apart from `accounts` (hashing, tokens, sessions, throttling) keeps each module to one job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sampan.web.errors import Invalid

__all__ = ["CompanyInfo", "PortalPrincipal", "normalise_email"]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
_COMPANY_LIMITS = {"name": 200, "registration_number": 100, "country": 100, "address": 2000, "contact_name": 200,
                   "contact_email": 254, "website": 400}


def normalise_email(email: str, field_name: str = "email") -> str:
    """The stored form of an email address (trimmed, lower-case); Invalid naming the field when it is not one."""
    value = (email or "").strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise Invalid(f"{field_name} must be an email address like name@company.example", field_name)
    return value


@dataclass(frozen=True)
class CompanyInfo:
    """The applicant's company, as entered at registration (name and country are required)."""

    name: str
    country: str
    registration_number: str = ""
    address: str = ""
    contact_name: str = ""
    contact_email: str = ""
    website: str = ""

    def checked(self) -> dict[str, str]:
        """The values trimmed and bounded; Invalid naming `company.<field>` otherwise."""
        values = {k: (getattr(self, k) or "").strip() for k in _COMPANY_LIMITS}
        for key, limit in _COMPANY_LIMITS.items():
            if len(values[key]) > limit:
                raise Invalid(f"company {key.replace('_', ' ')} is longer than {limit} characters", f"company.{key}")
        for key in ("name", "country"):
            if not values[key]:
                raise Invalid(f"company {key} is required", f"company.{key}")
        if values["contact_email"]:
            values["contact_email"] = normalise_email(values["contact_email"], "company.contact_email")
        if values["website"] and not re.match(r"^https?://[^\s/]+", values["website"]):
            raise Invalid("company website must start with http:// or https://", "company.website")
        return values


@dataclass(frozen=True)
class PortalPrincipal:
    """Who is acting in the portal: account id, email, role and (for applicants) company."""

    user_id: int
    email: str
    role: str
    company_id: int | None = None
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return f"portal:{self.email}"
