"""R16-VERDICT-4: nothing ties the exported model (which F-AUC-*, F-PREDICT, F-EVALUATE, S-MIA and S-BACKDOOR all
judge) to the model the federation trained: the verifier's party sees every global model, but no test compares the
last one with the export. A platform whose federated training learns nothing exports a centrally fitted model and
passes the accuracy test.

Fixed in `sampan.verify.catalogue.export_tie`: the verifier's party records the global models it receives (the weak
kit taps the final one too), and every test that judges an export (F-AUC-*, F-PREDICT, F-EVALUATE, S-MIA,
S-DP-AUDIT-ONE-RUN, S-BYZANTINE, S-BACKDOOR) fails when the export is not the last of them within
`export_global_tol`; where the party saw no final model the outcome says "not checked"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, CentralExport, Recording, evaluate, verdicts  # noqa: E402

from sampan.verify.backend import BackendError  # noqa: E402


def _served(model: Any, data: Any) -> np.ndarray:
    """The scores ``model`` (a ModelExport) gives ``data`` (what the platform's /predict answers)."""
    X = np.asarray([[float(r[data.columns.index(c)]) for c in model.features] for r in data.rows])
    assert model.standardisation is not None
    X = (X - np.asarray(model.standardisation.mean)) / np.asarray(model.standardisation.scale)
    return np.asarray(1.0 / (1.0 + np.exp(-(X @ np.asarray(model.coefficients) + model.intercept))))


class PredictOnly(Recording):
    """The weak platform serving its federated model through /predict only: no model export to compare."""

    def info(self) -> Any:
        info = super().info()
        return info.model_copy(update={"capabilities": [c for c in info.capabilities if c != "model_export"]})

    def model(self, job_id: str) -> Any:
        raise BackendError("unsupported", "this platform exports no model")

    def served(self, job_id: str) -> Any:
        return Recording.model(self, job_id)

    def _scores(self, job_id: str, data: Any) -> np.ndarray:
        return _served(self.served(job_id), data)


class CentralPredictOnly(PredictOnly, CentralExport):
    """`CentralExport`'s central fit, served only through /predict."""

    def served(self, job_id: str) -> Any:
        return CentralExport.model(self, job_id)


pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_accuracy_is_not_passed_by_an_export_the_federation_did_not_train() -> None:
    ev = evaluate(CentralExport(), ["F-AUC-HORIZONTAL"], profile="quick", seed=16)  # fixed: reproducible
    verdict, message = verdicts(ev)["F-AUC-HORIZONTAL"]
    # every global model the verifier's party received was all zeros (learning rate 0): the federation trained
    # nothing, so the federated accuracy test must not pass on the platform's central fit
    assert verdict == "fail", message
    assert "not the final global model the verifier's party received" in message, message


def test_every_test_judging_that_export_fails_and_an_honest_export_is_tied() -> None:
    out = verdicts(evaluate(CentralExport(), ["F-NONIID", "F-PREDICT", "F-EVALUATE"]))
    for test in ("F-NONIID", "F-PREDICT", "F-EVALUATE"):
        assert out[test][0] == "fail" and "the federation did not produce it" in out[test][1], out
    honest = evaluate(Recording(), ["F-AUC-HORIZONTAL"], profile="quick")
    outcome = honest.outcomes[0]
    assert outcome.verdict == "pass", outcome.message
    assert [c["status"] for c in outcome.evidence["integrity"]] == ["match"], outcome.evidence


def test_without_an_export_the_predict_scores_are_tied() -> None:
    verdict, message = verdicts(evaluate(CentralPredictOnly(), ["F-AUC-HORIZONTAL"], profile="quick"))[
        "F-AUC-HORIZONTAL"]
    assert verdict == "fail" and "/predict scores are not those of the final global model" in message, message
    honest = evaluate(PredictOnly(), ["F-AUC-HORIZONTAL"], profile="quick").outcomes[0]
    assert honest.verdict == "pass", honest.message
    assert [(c["status"], c["by"]) for c in honest.evidence["integrity"]] == [("match", "/predict scores")]
