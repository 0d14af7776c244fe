"""Negative controls the in-repo platforms cannot give: a platform that lets anyone in fails S-ACCESS, and one
that accepts any request fails F-LIFECYCLE/F-REGISTRATION's error-code checks (a stub API answering 200 to all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sampan.verify.catalogue import functional, security_wire
from sampan.verify.catalogue.base import Context
from sampan.verify.catalogue.data import make_bench_data
from sampan.verify.catalogue.http import Reply

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


class OpenDoor:
    """An API that accepts everything: every call 200 with ids, every job instantly succeeded."""

    url = "http://127.0.0.1:9"
    calls: list[tuple[str, str, Any]]

    def __init__(self) -> None:
        self.calls = []

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        self.calls.append((method, path, kw.get("token", "")))
        return Reply(200, {"project_id": "p1", "job_id": "j1", "state": "succeeded", "round": 1, "rounds": 1},
                     {"x-bench-api-version": "1.0"})

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, path, body).body


def _ctx() -> Context:
    return Context(api=OpenDoor(), info={"capabilities": ["horizontal"], "claims": {}},  # type: ignore[arg-type]
                   data=make_bench_data(4, "german", SHARED), profile="quick")


def test_access_fails_on_an_open_door() -> None:
    ctx = _ctx()
    result = security_wire.access(ctx)
    assert result.verdict == "fail"
    assert sum(not c["ok"] for c in result.evidence["checks"]) == len(result.evidence["checks"])
    assert any(token is None for _, _, token in ctx.api.calls)  # the no-token calls were really made


def test_error_code_checks_fail_on_a_platform_that_accepts_anything() -> None:
    assert functional.registration(_ctx()).verdict == "fail"
    assert functional.api_version(_ctx()).verdict == "fail"  # unknown path answered 200; /info not a PlatformInfo


def test_oversized_fails_on_a_platform_that_takes_any_body() -> None:
    result = security_wire.oversized(_ctx())  # no kit: the body check alone
    assert result.verdict == "fail" and result.evidence["status"] == 200


class _Run:
    def __init__(self, state: str, model: Any, status: int, error: Any = None) -> None:
        self.job = {"state": state, "error": error}
        self.model, self.model_status = model, status


def test_bad_update_rule_fails_a_model_the_bad_update_reached() -> None:
    judge = security_wire._judge_bad_update
    nan = {"coefficients": [float("nan"), 1.0], "intercept": 0.0}
    assert not judge(_Run("succeeded", nan, 200), "bank_c", 2)["healthy"]
    long = {"coefficients": [0.1] * 2000, "intercept": 0.0}  # the 1000x update made the model 1000x long
    assert not judge(_Run("succeeded", long, 200), "bank_c", 2)["healthy"]
    fine = {"coefficients": [0.1, 0.2], "intercept": 0.0}
    assert judge(_Run("succeeded", fine, 200), "bank_c", 2)["healthy"]  # dropped, the job went on


def test_bad_update_rule_fails_an_opaque_stop_or_a_model_from_a_failed_job() -> None:
    judge = security_wire._judge_bad_update
    clear = {"code": "invalid", "message": "round 1: the update of party 'bank_c' has 33000 values"}
    ok = judge(_Run("failed", None, 409, clear), "bank_c", 2)
    assert ok["healthy"] and ok["availability"] == "one party can stop the job"
    opaque = {"code": "internal", "message": "operands could not be broadcast together"}
    assert not judge(_Run("failed", None, 409, opaque), "bank_c", 2)["healthy"]
    assert not judge(_Run("failed", None, 409, None), "bank_c", 2)["healthy"]
    fine = {"coefficients": [0.1, 0.2], "intercept": 0.0}
    assert not judge(_Run("failed", fine, 200, clear), "bank_c", 2)["healthy"]  # exported despite the failure


def test_secagg_check_fails_a_ring_payload_that_is_only_an_encoding() -> None:
    """A platform that 'masks' by encoding the update in the ring (or adding one fixed pad) is caught."""
    import numpy as np

    from sampan.verify.catalogue.security_leak import ASSUMED_FRAC_BITS, _ring_pairs

    rng = np.random.default_rng(5)  # seeded: a reproducible fake tap
    pad = rng.integers(0, 2**63, size=30, dtype=np.uint64)

    class Plane:
        def __init__(self, with_pad: bool) -> None:
            from sampan.verify.kits import RecordingTap

            self.tap = RecordingTap()
            for r in range(1, 11):
                delta = rng.normal(0, 0.05, 30)
                ring = np.rint(delta * 2.0**ASSUMED_FRAC_BITS).astype(np.int64).view(np.uint64)
                if with_pad:
                    ring = ring + pad  # the same pad every round (wraps mod 2^64)
                self.tap.sent("update_clear", r, {"update": delta})
                self.tap.sent("update", r, {"masked_update": ring})

    from sampan.audit.secure_agg_checks import is_masked

    for with_pad in (False, True):
        pairs = _ring_pairs(Plane(with_pad), 30)
        sent = np.stack([p[1] for p in pairs])
        clear = np.stack([p[2] for p in pairs])
        result = is_masked(sent, clear, ring_bits=64, scale=2.0**ASSUMED_FRAC_BITS)
        assert not result.masked, (with_pad, result.notes)


# every security test and where its negative control (a platform or configuration it must fail) is asserted
NEGATIVE_CONTROLS = {
    "S-ACCESS": "test_catalogue_controls.py::test_access_fails_on_an_open_door",
    "S-TLS-NO-CLIENT-CERT": "test_catalogue_weak.py::test_quick_profile",
    "S-TLS-WRONG-CA": "test_catalogue_weak_tls.py", "S-TLS-EXPIRED": "test_catalogue_weak_tls.py",
    "S-TLS-REVOKED": "test_catalogue_weak_tls.py",
    "S-REPLAY": "test_catalogue_weak_updates.py", "S-MALFORMED": "test_catalogue_weak_updates.py",
    "S-OVERSIZED": "test_catalogue_controls.py::test_oversized_fails_on_a_platform_that_takes_any_body, "
                   "test_bad_update_rule_*",
    "S-GRAD-INVERSION": "test_catalogue_weak_privacy.py", "S-MIA": "test_catalogue_weak_privacy.py, "
                   "test_catalogue_controls_sampan.py (Sampan with DP off)",
    "S-DP-AUDIT-ONE-RUN": "test_catalogue_weak_privacy.py, test_catalogue_controls_sampan.py (Sampan with DP off)",
    "S-SECAGG-MASKED": "test_catalogue_weak.py::test_quick_profile, "
                       "test_secagg_check_fails_a_ring_payload_that_is_only_an_encoding",
    "S-BYZANTINE": "test_catalogue_weak_robust.py", "S-BACKDOOR": "test_catalogue_weak_robust.py",
    "S-PSI-LEAK": "test_catalogue_psi_leak.py",
    "S-DP-REPEAT": "../attacks/test_r16b7_dp_repeat.py, ../attacks/test_r16b_dp_when_audited_doc.py",
}


def test_every_security_test_has_a_negative_control() -> None:
    from sampan.verify.catalogue.security import SECURITY

    assert set(NEGATIVE_CONTROLS) == {t.id for t in SECURITY}
    here = Path(__file__).resolve().parent
    for where in NEGATIVE_CONTROLS.values():
        for ref in where.split(", "):
            name = ref.split("::")[0].split(" ")[0]
            if name.endswith(".py"):
                assert (here / name).is_file(), ref
