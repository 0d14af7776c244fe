"""R16B-8: the export tie compares the standardisation only "when the party received it with" the final model. A
platform whose federation learns nothing (learning rate 0 from a random start r) sends its final model with an empty
mean and scale (every earlier round's model carried them), exports r exactly, and picks the export's standardisation
(scale_j' = scale_j * r_j / c_j, negative scales accepted) so that the export scores every row as a central fit c.
The tie says "match" (coefficients only) and F-AUC-HORIZONTAL, F-PREDICT and F-EVALUATE pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import StandardisationSwap  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


@pytest.mark.xfail(strict=True, reason="R16B-8: a final model sent without its standardisation lets the export pick "
                   "its own, which turns a random federated model into a central fit")
def test_an_export_with_a_chosen_standardisation_is_not_tied() -> None:
    out = verdicts(evaluate(StandardisationSwap(), ["F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"], profile="quick",
                            seed=16))
    # every model the federation published was one random vector: it learned nothing the export may be credited with
    for test in ("F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"):
        assert out[test][0] == "fail", out
