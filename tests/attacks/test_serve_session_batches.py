"""Attacks on the vertical scoring session (`sampan.serve.session`): a malicious coordinator (driver) and a
scoring client with a valid token, against the bank's `BankQueue` (issue 13 review findings, now fixed).

Fixed by: the bank binds each batch token to the request id ``serve.start`` gave it, starts it once, finishes it
only under that id and checks the results are the batch's applicants (SRV-1); it builds the score request's meta
from its own batch, passing only request id, partners and bank (SRV-2); ids are checked per request before they
join a batch and health recovers on the next exchange (SRV-3); a request is split into exchanges of at most
``max_batch`` (SRV-4); each sealed id is padded to 64 bytes (`sampan.vertical.applicants.pack_ids`, SRV-11).

R13-SRV-1: the bank does not bind a batch token to the request id it was started with, so a coordinator that
finishes batch T1 with the request id of batch T2 hands client A the ids, PDs and reasons of client B's applicants.
R13-SRV-2: the coordinator's ``applicants_file`` meta on ``serve.start`` replaces the batch's own applicants (when
the bank declared an applicants folder for its scoring jobs): an HTTP client gets the file's applicants' scores.
R13-SRV-3: one client's id holding only blanks or a line break fails every request sharing its exchange (503,
with the batch positions), and /v1/health stays "degraded" after later successful exchanges.
R13-SRV-4: ``max_batch`` ("applicants per exchange with the partners") does not bound a single request.
R13-SRV-11: the ids sealed bank -> partner are not padded: the coordinator reads the byte length of the batch's ids
from the envelope sizes it relays (in serving the coordinator is not supposed to learn anything of the ids).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sampan.data import make_sme_consortium  # noqa: E402
from sampan.runtime.federation import build_inprocess_vertical  # noqa: E402
from sampan.serve.app import create_app  # noqa: E402
from sampan.serve.backends import ModelInfo, VerticalBackend  # noqa: E402
from sampan.serve.session import BankQueue, ServingDriver, VerticalScoringSession  # noqa: E402
from sampan.vertical.applicants import ApplicantsPolicy  # noqa: E402
from sampan.vertical.model import LocalLinearPart, LocalScaler  # noqa: E402
from sampan.wire import Message  # noqa: E402

PARTNERS = ["payments", "delivery"]


class Relay:
    """The coordinator's transport: records the batch sizes the bank announces."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.sizes, self.envelopes = inner, [], []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for reply in self.inner.exchange(list(messages)):
            if reply.kind == "serve.batch":
                self.sizes.append(int(reply.meta["n"]))
            if reply.kind == "serve.started":
                self.envelopes.append(sorted((k, a.shape) for k, a in reply.arrays.items()))
            yield reply


def _federation(seed: int = 5) -> tuple[Relay, dict[str, Any], list[str]]:
    tables = make_sme_consortium(300, seed=seed).vertical
    inner, parties = build_inprocess_vertical(tables)
    rng = np.random.default_rng(seed)
    for name, party in parties.items():  # parts as if loaded from each party's registry
        d = party.data.X.shape[1]
        party.loaded_part = LocalLinearPart(name, list(party.data.feature_names), LocalScaler(np.zeros(d), np.ones(d)),
                                            rng.normal(size=d))
    known = sorted(set(map(str, tables["bank"].ids)) & set(map(str, tables["payments"].ids))
                   & set(map(str, tables["delivery"].ids)))
    return Relay(inner), parties, known


def _driver(relay: Relay, parties: dict[str, Any], **kw: Any) -> tuple[BankQueue, ServingDriver]:
    queue = BankQueue(parties["bank"], **kw)
    driver = ServingDriver(relay, bank="bank", partners=PARTNERS, model_run="r", run_id="serve-review")  # type: ignore[arg-type]
    driver.session.connect()
    return queue, driver


def _quietly(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - client B's own failure is not what is tested
        pass


def _meta(token: str, request: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": request, "partners": PARTNERS, "bank": "bank", "batch": token, **extra}


def test_coordinator_cannot_cross_wire_two_clients_batches() -> None:
    relay, parties, known = _federation()
    queue, driver = _driver(relay, parties)
    r = driver.session.relay
    client_a = queue.submit(known[:2])
    t1 = r.wave(relay, [r.request("bank", "serve.next")])[0].meta["batch"]
    queue.submit(known[5:7])  # client B, the next batch
    t2 = r.wave(relay, [r.request("bank", "serve.next")])[0].meta["batch"]
    r.wave(relay, [r.request("bank", "serve.start", meta=_meta(t2, "r2"))])
    r.wave(relay, (r.request(p, "score.partial", meta=_meta(t2, "r2")) for p in PARTNERS))
    try:  # finish A's token with B's request id
        r.wave(relay, [r.request("bank", "serve.finish", meta=_meta(t1, "r2"))])
    except Exception:  # noqa: BLE001 - a refusal is the defence
        pass
    try:
        got = [x["applicant"] for x in client_a.result(2)]
    except Exception:  # noqa: BLE001 - A's request failing is fine; getting B's rows is not
        got = []
    assert not set(got) & set(known[5:7]), f"client A received client B's applicants {got}"


def test_serving_batch_scores_only_its_own_applicants(tmp_path: Path) -> None:
    relay, parties, known = _federation()
    (tmp_path / "other-desk.csv").write_text("id\n" + "\n".join(known[10:12]) + "\n")
    parties["bank"].scoring.applicants = ApplicantsPolicy(folder=str(tmp_path))  # declared for its scoring jobs
    queue, driver = _driver(relay, parties)
    r = driver.session.relay
    client = queue.submit(known[:2])
    token = r.wave(relay, [r.request("bank", "serve.next")])[0].meta["batch"]
    meta = _meta(token, "r1", applicants_file=str(tmp_path / "other-desk.csv"))
    try:
        r.wave(relay, [r.request("bank", "serve.start", meta=meta)])
        r.wave(relay, (r.request(p, "score.partial", meta=meta) for p in PARTNERS))
        r.wave(relay, [r.request("bank", "serve.finish", meta=meta)])
    except Exception:  # noqa: BLE001 - a refusal is the defence
        pass
    try:
        got = [x["applicant"] for x in client.result(2)]
    except Exception:  # noqa: BLE001
        got = []
    assert not set(got) & set(known[10:12]), f"the HTTP client received the file's applicants {got}"


def test_one_clients_bad_id_does_not_fail_the_others() -> None:
    relay, parties, known = _federation()
    session = VerticalScoringSession(parties["bank"], relay, partners=PARTNERS, model_run="r", wait_s=0.05)
    session.driver.open = session.driver.session.connect  # type: ignore[method-assign]  # parts set above
    backend = VerticalBackend(session, ModelInfo("v", None, "f", "lr", "vertical", None), timeout_s=5)
    client_a = session.queue.submit([known[0]])
    client_b = threading.Thread(target=lambda: _quietly(backend.score, [{"id": known[3]}, {"id": " \n "}]))
    client_b.start()  # client B's malformed id, queued (unless refused) in the same exchange
    time.sleep(0.2)
    session.open()
    try:
        try:
            a_rows = client_a.result(5)
        except Exception as exc:  # noqa: BLE001
            a_rows = [str(exc)]
        client_b.join(5)
        app = TestClient(create_app(backend, mtls=True))
        assert app.post("/v1/score", json={"applicants": [{"id": known[1]}]}).status_code == 200
        health = app.get("/v1/health").json()["status"]
    finally:
        session.close()
    assert [r["applicant"] if isinstance(r, dict) else r for r in a_rows] == [known[0]], a_rows
    assert health == "ok"


def test_max_batch_bounds_every_exchange() -> None:
    relay, parties, _ = _federation()
    queue, driver = _driver(relay, parties, max_batch=4)
    try:
        future = queue.submit([f"ID{i:04d}" for i in range(50)])
    except ValueError:  # refusing the over-long request is a defence too
        return
    while not future.done() and driver.step():
        pass
    assert max(relay.sizes) <= 4, f"exchanges of {relay.sizes} applicants with max_batch = 4"


def test_envelope_sizes_do_not_depend_on_the_id_length() -> None:
    relay, parties, _ = _federation()
    queue, driver = _driver(relay, parties)
    for applicant in ("BR1", "BR0000000000001"):  # neither is known: both scored alike
        future = queue.submit([applicant])
        driver.step()
        future.result(2)
    assert relay.envelopes[0] == relay.envelopes[1], relay.envelopes


def test_a_client_is_not_told_which_partner_lacks_the_applicant() -> None:
    """Review note on R13-SRV: `missing_at` named the partners that do not know the applicant to every HTTP client
    (whose customer the applicant is not); the service now answers only that some partner data was missing."""
    backend = VerticalBackend(None, ModelInfo("v", None, "f", "lr", "vertical", None))  # type: ignore[arg-type]
    row = {"applicant": "BR1", "probability_of_default": 0.1, "score": 640.0, "reasons": [], "missing_at": ["payments"]}
    (shaped,) = backend._shape([row])
    assert shaped["missing_at"] == ["partner data"] and "payments" not in str(shaped)


def test_the_deploy_gate_refuses_a_serving_batch_naming_an_applicants_file() -> None:
    """R13-SRV-2, at the bank's gate: in a serving job, ``serve.start`` naming an ``applicants_file`` is refused
    before the handler (which builds the score request from its own batch anyway)."""
    from sampan.deploy.allow import AllowSection, JobRefused, check_request, job_description

    config = {"vertical": {"label_holder": "bank", "models": ["lr"]}, "scoring": {"model_run": "m1"}}
    job = job_description(config, workflow="serving", operator="ops", parties=["bank", "payments"],
                          label_holder="bank")
    allow = AllowSection.model_validate({"partners": ["payments"], "workflows": ["serving"], "serving_models": ["m1"]})
    with pytest.raises(JobRefused, match="serve.start names applicants file"):
        check_request(allow, "bank", "serve.start", {"request_id": "r/1", "partners": ["payments"], "bank": "bank",
                                                     "batch": "t", "applicants_file": "/bank/desk.csv"}, job)
