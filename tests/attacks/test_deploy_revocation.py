"""Finding 17: revocation reaches live connections, and a stale CRL stops runs from starting.

On commit 1064fb2 the CRL was consulted only when a stream opened: a revoked member stayed connected and
joined a new run six seconds after the CRL was published. Now the coordinator watches the CRL (and the
CA's issuance record), re-checks every live stream when either changes and cuts the revoked ones
(their outstanding requests fail at once), re-checks everyone when a run starts, and refuses to start a
run on a CRL whose nextUpdate has passed. Real coordinator and party agents over gRPC on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.deploy.certs import refresh_crl, revoke

from _deploy_federation import ThreadFederation, run_config, wait_until

pytestmark = pytest.mark.slow


def test_a_revoked_member_is_cut_mid_run_and_cannot_join_the_next_run(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path, coordinator={"connect_timeout_s": 3})
    try:
        long_run = fed.submit(run_config("long", run={"name": "long", "rounds": 400, "seed": 3}))
        assert wait_until(lambda: fed.coordinator.status(*_status(long_run)).meta["round"] >= 1, 60)
        revoke(fed.files.ca_dir, cert_path=fed.files.root / "bank_lionrock" / "bank_lionrock.crt")

        status = fed.wait(long_run)
        assert status["status"] == "failed" and "revoked" in status["error"], status
        assert status["round"] < 400
        assert wait_until(lambda: "bank_lionrock" in fed.fatal)  # the agent was told why, and stopped retrying
        assert "revoked" in fed.fatal["bank_lionrock"]
        assert "bank_lionrock" not in fed.coordinator.hub.connected()

        next_run = fed.submit(run_config("next"))
        status = fed.wait(next_run)
        assert status["status"] == "failed" and "bank_lionrock" in status["error"], status
        assert fed.kinds("bank_lionrock", next_run) == []
        ok = fed.submit(run_config("without", deploy={"parties": ["bank_harbour", "bank_kowloon"]}))
        assert fed.wait(ok)["status"] == "completed"  # the others were never disturbed
    finally:
        fed.close()


def test_a_run_does_not_start_on_an_expired_crl(tmp_path: Path) -> None:
    fed = ThreadFederation(tmp_path)
    try:
        refresh_crl(fed.files.ca_dir, days=-1 / 1440)  # nextUpdate a minute ago: revocations may be missing
        stale = fed.submit(run_config("stale"))
        status = fed.wait(stale)
        assert status["status"] == "failed" and "expired" in status["error"] and "CRL" in status["error"], status
        assert all(fed.kinds(p, stale) == [] for p in fed.agents)
        fed.coordinator.security.flush()
        kinds = [e.kind for e in fed.coordinator.store.events("security")]
        assert "crl_expired" in kinds
        refresh_crl(fed.files.ca_dir, days=30)
        assert fed.wait(fed.submit(run_config("fresh")))["status"] == "completed"
    finally:
        fed.close()


def _status(run_id: str):  # type: ignore[no-untyped-def]
    from _deploy_federation import OPERATOR
    from sampan.wire import Message

    return OPERATOR, Message("", 0, "ops", "coordinator", "s", meta={"run_id": run_id})

