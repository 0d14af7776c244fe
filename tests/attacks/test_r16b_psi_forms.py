"""R16B-2 (fixed): S-PSI-LEAK (R16-VERDICT-11) read an id "in the clear" only as a string element equal to the id, and
an unsalted hash only by its first 8 digest bytes. An id inside a longer string (a comma-joined list, "id:<id>"),
its base64 or the hex of its bytes, is in a form anyone can read (the module's own threat model) and is not found (a
hash salted with a constant the platform publishes is missed too; only a documented limit can answer that). A
platform that sends the verifier's feature holder every id of the label holder in one joined string in the join plan
was credited with no leak.

Fixed (`IdForms`): ids are searched as tokens of longer strings and inside the printable base64/hex decodings of any
run of a string or bytes value, digests anywhere in those decodings; numeric ids (the benchmark's) as tokens and as
integer-array values count when one array covers the private ids `psi_id_excess_min` more often than the other
numbers of the id range (chance numbers such as Sampan's row indices do not)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

from sampan.verify.catalogue.security_psi import IdForms  # noqa: E402

IDS = ["C000123", "C000456", "C000789"]
FORMS = {
    "joined": np.array([",".join(IDS)]),
    "prefixed": np.array([f"id:{i}" for i in IDS]),
    "base64": np.array([base64.b64encode(i.encode()).decode() for i in IDS]),
    "hex-of-bytes": np.array([i.encode().hex() for i in IDS]),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_readable_id_forms_are_found(form: str) -> None:
    assert IdForms(IDS).found_in({"plan_note": FORMS[form]}) == set(IDS)


@pytest.mark.slow
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


NUMERIC = [str(i) for i in range(1, 1001)]
PRIVATE = NUMERIC[600:675]  # 75 ids of one side outside a 600-id intersection, as in the benchmark's split


def test_a_digest_inside_a_string_and_url_safe_base64_are_found() -> None:
    import hashlib

    digest = hashlib.sha256(IDS[0].encode()).digest()
    payload = {"note": np.array([f"row ok; key={digest.hex()}", base64.urlsafe_b64encode(b"id=" + IDS[1].encode())
                                 .decode()])}
    assert IdForms(IDS).found_in(payload) == {IDS[0], IDS[1]}


def test_numeric_ids_in_a_joined_string_or_an_integer_array_are_found() -> None:
    forms = IdForms(PRIVATE, NUMERIC)
    shown = NUMERIC[:675]  # the intersection and the private ids: the party learns which private ids exist
    assert forms.found_in({"note": np.array([";".join(f"id:{i}" for i in shown)])}) == set(PRIVATE)
    assert forms.found_in({"ids": np.array([int(i) for i in PRIVATE], dtype=np.int64)}) == set(PRIVATE)


def test_chance_numbers_are_not_numeric_ids() -> None:
    """Row indices (Sampan sends them) and numbers in timestamps cover the private ids no more than other numbers."""
    forms = IdForms(PRIVATE, NUMERIC)
    rng = np.random.default_rng(7)
    assert forms.found_in({"rows": np.arange(600, dtype=np.int64),
                           "train_rows": rng.permutation(1000)[:460].astype(np.int64),
                           "stamp": np.array(["2026-12-07T20:12:53.123 round 3 of 6"])}) == set()
