"""Shared set-up for the control-plane tests: a ControlPlane over a fresh store and the FakeGateway, its app,
and clients signed in as each role (bearer tokens, or a session cookie with its CSRF token)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from sampan.runtime.store import Store
from sampan.web.app import AppSettings, create_app
from sampan.web.auth import Accounts, AuthSettings
from sampan.web.fake_gateway import FakeGateway
from sampan.web.roles import Principal
from sampan.web.service import ControlPlane

BANKS = ("bank_a", "bank_b", "bank_c")
CHOSEN_PASSWORD = "a long password!"  # what `first_sign_in` sets: every test account's password
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # argon2id still; cheap for tests
HORIZONTAL = {"run": {"name": "sme-fedavg", "workflow": "horizontal", "rounds": 3},
              "model": {"kind": "logistic"},
              "privacy": {"epsilon": 1.0, "delta": 1e-5, "dp3": {"clip": 1.0}}}


class ManualClock:
    """A clock the test moves by hand (sessions, tokens, TOTP steps, lockouts)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class World:
    plane: ControlPlane
    gateway: FakeGateway
    app: FastAPI
    admin: Principal
    admin_password: str
    clock: ManualClock
    users: dict[str, Principal] = field(default_factory=dict)

    def client(self, principal: Principal | None = None) -> TestClient:
        """A client sending `principal`'s fresh API token (None: no credentials)."""
        client = TestClient(self.app)
        if principal is not None:
            _, token = self.plane.accounts.issue_token(principal, "test")
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    def user(self, username: str, role: str, organisation: str | None = None) -> Principal:
        principal, _ = self.plane.accounts.create_user(username, role, organisation, password="a long password!")
        self.users[username] = principal
        return principal


def first_sign_in(accounts: Accounts, username: str, one_time_password: str,
                  new_password: str = CHOSEN_PASSWORD) -> Principal:
    """Sign in with a one-time password and choose `new_password` at once, as the console makes a person do
    (R14-WEB-1: until then the account may do nothing else): the principal, free to act."""
    first = accounts.authenticate(username, one_time_password)
    accounts.set_password(first, one_time_password, new_password)
    return accounts.authenticate(username, new_password)


def make_world(tmp_path: Path, store_url: str | None = None, *, clock: ManualClock | None = None,
               auth: AuthSettings | None = None) -> World:
    clock = clock or ManualClock()
    store = Store.open(store_url or f"sqlite:///{tmp_path / 'control.db'}", audit_key=tmp_path / "audit.pem")
    gateway = FakeGateway(store, tmp_path / "agents")
    plane = ControlPlane(store, gateway, Accounts(store.engine, auth or AuthSettings(argon2=FAST_ARGON2), clock),
                         clock)
    one_time = plane.accounts.bootstrap_admin("admin")
    assert one_time is not None
    password = "the admin's long password"
    admin = first_sign_in(plane.accounts, "admin", one_time, password)
    app = create_app(plane, AppSettings(secure_cookies=False, console=False))
    return World(plane, gateway, app, admin, password, clock)


def consortium_with_banks(world: World) -> tuple[int, dict[str, Principal]]:
    """A consortium of the three banks, each bank's operator having registered its `sme_loans` dataset."""
    cid = int(world.plane.create_consortium(world.admin, "HK SME lending")["id"])
    operators: dict[str, Principal] = {}
    for bank in BANKS:
        invitation = world.plane.invite_member(world.admin, cid, bank)
        operators[bank] = first_sign_in(world.plane.accounts, invitation["operator_username"],
                                        invitation["one_time_password"])
        world.plane.register_dataset(operators[bank], cid, bank, "sme_loans")
    return cid, operators


def job_body(name: str = "sme-lr", config: dict[str, Any] | None = None, **datasets: Any) -> dict[str, Any]:
    return {"name": name, "config": config or HORIZONTAL,
            "datasets": datasets or {bank: "sme_loans" for bank in BANKS}}
