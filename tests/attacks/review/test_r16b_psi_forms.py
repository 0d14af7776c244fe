"""R16B-2: S-PSI-LEAK (R16-VERDICT-11) reads an id "in the clear" only as a string element equal to the id, and an
unsalted hash only by its first 8 digest bytes. An id inside a longer string (a comma-joined list, "id:<id>"), its
base64 or the hex of its bytes, is in a form anyone can read (the module's own threat model) and is not found (a
hash salted with a constant the platform publishes is missed too; only a documented limit can answer that). A
platform that sends the verifier's feature holder every id of the label holder in one joined string in the join
plan is credited with no leak."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampan.verify.catalogue.security_psi import IdForms  # noqa: E402

IDS = ["C000123", "C000456", "C000789"]
FORMS = {
    "joined": np.array([",".join(IDS)]),
    "prefixed": np.array([f"id:{i}" for i in IDS]),
    "base64": np.array([base64.b64encode(i.encode()).decode() for i in IDS]),
    "hex-of-bytes": np.array([i.encode().hex() for i in IDS]),
}


@pytest.mark.xfail(strict=True, reason="R16B-2: S-PSI-LEAK finds ids only as equal strings or unsalted-hash prefixes")
@pytest.mark.parametrize("form", sorted(FORMS))
def test_readable_id_forms_are_found(form: str) -> None:
    assert IdForms(IDS).found_in({"plan_note": FORMS[form]}) == set(IDS)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="R16B-2: the other side's ids joined in one string in the plan are not found")
def test_the_label_holders_ids_in_the_plan_are_counted() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from _r16_verdict_fakes import SHARED, evaluate
    from _r16b_fakes import PlanLeaker

    if not (SHARED / "german_credit").is_dir():
        pytest.skip("shared datasets not found")
    outcome = evaluate(PlanLeaker(), ["S-PSI-LEAK"], seed=16).outcomes[0]
    # every id the label holder holds outside the intersection reached the verifier's party in the clear; the
    # verdict is already "fail" for the weak kit's own clear ids, so the repro asks for the received count
    assert outcome.evidence["received_other_side_ids"] == outcome.evidence["other_side_private_ids"] > 0, \
        outcome.evidence
    assert "received" in outcome.message, outcome.message
