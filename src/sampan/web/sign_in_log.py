"""What a failed sign-in puts in the audit log about the name that was typed.

Why: people type their password into the user-name field; a failed sign-in is audited (a SIEM watches for bursts),
and the signed audit log is exported and kept for years. So the typed name is logged only when it is an existing
account's name (then it is not a password); anything else is logged as "(unknown user)" — no hash either, since a
hash of a short password is guessed offline.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UNKNOWN_USER", "logged_username"]

UNKNOWN_USER = "(unknown user)"


def logged_username(accounts: Any, typed: str) -> str:
    """`typed` if an account has exactly that name, else `UNKNOWN_USER`."""
    if not typed or len(typed) > 200:
        return UNKNOWN_USER
    return typed if accounts._user(typed) is not None else UNKNOWN_USER
