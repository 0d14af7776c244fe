"""R14-CONSENT2-2: the per-`fit` training check covers epochs, steps, batch size, learning rate, optimizer,
momentum and l2, but not `class_weight` or `proximal_mu`, which the party trains with as the request says.

Claim (allow_requests._check_training, review R14-CONSENT-4 fixed): "A `fit` trains exactly as approved". A
coordinator holding an approval of an unweighted exact job sends `class_weight = [1e-4, 1e4]`: the update the
party returns is (almost) the gradient over its positive-label rows only (the defaulters), a statistic of a
sub-population the party never approved releasing; `proximal_mu` likewise changes the update. The approved
config's `[training] class_weight` is put in the job description (`extra["class_weight"]`) for the audit
record only: nothing compares it with the request either.
Fixed: training terms carry the resolved class weights ("pooled" where resolved at run time) and
proximal_mu; `_check_training` compares every TrainConfig key and refuses unknown keys.
Suggested fix: `training_terms` carries the resolved class weights (or None) and proximal_mu, and `_check_training`
compares every key of `TrainConfig` (refuse any key the approved job does not spell, including unknown ones).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _consent_grant import EXACT, consent_federation, feature_count, fit, gather_approvals, loans_spec, open_run  # noqa: E402


def test_fit_with_unapproved_class_weights_is_refused(tmp_path: Path) -> None:
    with consent_federation(tmp_path) as (_, agents, names):
        spec = loans_spec(EXACT, names, agents[names[0]].consent.served_columns("loans"), "run-w")
        approvals, refused = gather_approvals(agents, names, spec)
        assert refused is None, refused.meta
        victim = agents[names[0]]
        opened = open_run(victim, spec, approvals)
        assert not opened.is_error, opened.meta
        n_features = feature_count(victim, "run-w")
        assert "class_weight" not in spec.job  # the approved job trains unweighted
        train = {**spec.job["training"], "class_weight": [1e-4, 1e4], "proximal_mu": 5.0}
        reply = fit(victim, "run-w", 1, np.zeros(n_features + 1), {"kind": "logistic", "n_features": n_features},
                    train)
        assert reply.is_error, "a fit weighting the positive rows 10^8 times more was trained and answered"
