"""R16-VERDICT-4: nothing ties the exported model (which F-AUC-*, F-PREDICT, F-EVALUATE, S-MIA and S-BACKDOOR all
judge) to the model the federation trained: the verifier's party sees every global model, but no test compares the
last one with the export. A platform whose federated training learns nothing exports a centrally fitted model and
passes the accuracy test."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, CentralExport, evaluate, verdicts  # noqa: E402

pytestmark = pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found")


@pytest.mark.xfail(strict=True, reason="R16-VERDICT-4: the export is never checked against the federated model; a "
                                       "centrally fitted export passes F-AUC-HORIZONTAL while FL learned nothing")
def test_accuracy_is_not_passed_by_an_export_the_federation_did_not_train() -> None:
    ev = evaluate(CentralExport(), ["F-AUC-HORIZONTAL"], profile="quick", seed=16)  # fixed: reproducible
    verdict, message = verdicts(ev)["F-AUC-HORIZONTAL"]
    # every global model the verifier's party received was all zeros (learning rate 0): the federation trained
    # nothing, so the federated accuracy test must not pass on the platform's central fit
    assert verdict == "fail", message
