"""R16B-8: the export tie compares the standardisation only "when the party received it with" the final model. A
platform whose federation learns nothing (learning rate 0 from a random start r) sends its final model with an empty
mean and scale (every earlier round's model carried them), exports r exactly, and picks the export's standardisation
(scale_j' = scale_j * r_j / c_j, negative scales accepted) so that the export scores every row as a central fit c.
The tie says "match" (coefficients only) and F-AUC-HORIZONTAL, F-PREDICT and F-EVALUATE pass.

Fixed in `sampan.verify.catalogue.export_tie`: the standardisation tied is the final model's or, when it came
without one, the last one the party received; an export with none (when the party received one) or with a scale
that is not positive is not tied (`tests/verify/test_export_tie_trajectory.py` covers positive swapped scales)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "review"))  # the R16-VERDICT / R16B fakes

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _r16_verdict_fakes import SHARED, evaluate, verdicts  # noqa: E402
from _r16b_fakes import StandardisationSwap  # noqa: E402

pytestmark = [pytest.mark.skipif(not (SHARED / "german_credit").is_dir(), reason="shared datasets not found"),
              pytest.mark.slow]


def test_an_export_with_a_chosen_standardisation_is_not_tied() -> None:
    out = verdicts(evaluate(StandardisationSwap(), ["F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"], profile="quick",
                            seed=16))
    # every model the federation published was one random vector: it learned nothing the export may be credited with
    for test in ("F-AUC-HORIZONTAL", "F-PREDICT", "F-EVALUATE"):
        assert out[test][0] == "fail", out
