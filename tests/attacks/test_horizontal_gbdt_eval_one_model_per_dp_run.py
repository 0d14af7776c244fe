"""Review (issue 12, horizontal DP mods): under DP a party evaluates ONE model per run (`policy_mod`,
`_admit_evaluate`), identified by `request_digest`. The digest covers the model config and the arrays
``params``/``mean``/``scale`` only; the `evaluate` handler also scores GBDT payloads (kind "gbdt"), whose
split thresholds live in the arrays ``edges``/``edge_counts`` — outside the digest.

R12-HOR-1: a coordinator in a DP run (the party's policy requires DP; the job is logistic, so no ``hgb.*``)
sends a GBDT "model" with one stump on feature j and moves only ``edges``: every request digests alike, so each
is answered as "a retry of the same model". Each reply is the per-label count of holdout rows with
x_j <= t for a coordinator-chosen t (exact, 100 bins): the one-model-per-run rule (and with it the bound of one
100-level release about the holdout per DP run) is bypassed — K thresholds give the per-label CDF of x_j.
Fix: digest every array of the request (or every array the handler reads), not a fixed name list.
"""

from __future__ import annotations

import numpy as np

from sampan.core.capability import PartySetup
from sampan.data import PartyData
from sampan.horizontal.capability import HORIZONTAL
from sampan.metrics import ScoreHistogram
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.wire import Message

FEATURES = ["f0", "f1", "f2"]


def _data(name: str, n: int, rng: np.random.Generator) -> PartyData:
    X = rng.normal(size=(n, len(FEATURES)))
    y = (rng.random(n) < 0.5).astype(np.int8)
    return PartyData(party=name, ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object), X=X, y=y,
                     feature_names=FEATURES)


def _stump(threshold: float) -> tuple[dict, dict]:
    """One tree: root splits feature 0 at bin 0 (x_0 <= threshold) -> leaf -5 (p~0) else leaf +5 (p~1)."""
    tree = {"left": [1, -1, -1], "right": [2, -1, -1], "owner": ["all", "", ""], "value": [0.0, -5.0, 5.0],
            "default_left": [True, True, True], "node_value": [0.0, -5.0, 5.0]}
    model = {"kind": "gbdt", "n_features": 3, "base_score": 0.0, "trees": [tree], "splits": [[0, 0, 0, 0]]}
    arrays = {"edges": np.array([threshold, 0.0, 0.0]), "edge_counts": np.array([1, 1, 1], dtype=np.int64)}
    return model, arrays


def _evaluate_thresholds(app, run: str) -> list[int]:
    below = []
    for threshold in (-1.0, 0.0, 1.0):
        model, arrays = _stump(threshold)
        reply = app.handle(Message(run, 1, "coordinator", "bank", "evaluate", arrays=arrays, meta={"model": model}))
        if reply.is_error:
            break
        h = ScoreHistogram.from_arrays(dict(reply.arrays))
        below.append(int(h.pos[:50].sum() + h.neg[:50].sum()))  # rows scored ~0: x_0 <= threshold
    return below


def test_dp_party_evaluates_one_model_per_run_even_for_tree_payloads() -> None:
    """In a gbdt job whose run is under DP (a DP row count was released), the second tree model (other edges)
    of the run is refused: ``edges``/``edge_counts`` are in the digest."""
    rng = np.random.default_rng(0)
    train, test = _data("bank", 80, rng), _data("bank", 40, rng)
    app = HORIZONTAL.party_app(PartySetup("bank", (train, test), {"workflow": "horizontal", "model": "gbdt"},
                                          policy=PartyPrivacyPolicy()))
    described = app.handle(Message("dp-run", 0, "coordinator", "bank", "describe",
                                   meta={"dp_count": {"noise_multiplier": 1.0}}))
    assert not described.is_error, described.meta
    below = _evaluate_thresholds(app, "dp-run")
    assert len(below) == 1, f"DP run answered {len(below)} distinct tree models: rows x_0<=t per t = {below}"


def test_tree_payload_refused_outside_a_gbdt_job() -> None:
    """The review's scenario: a DP party in a logistic job answers no tree payload at all."""
    rng = np.random.default_rng(0)
    train, test = _data("bank", 80, rng), _data("bank", 40, rng)
    policy = PartyPrivacyPolicy(required_levels=frozenset({"DP"}))
    app = HORIZONTAL.party_app(PartySetup("bank", (train, test), {"workflow": "horizontal", "model": "logistic"},
                                          policy=policy))
    assert _evaluate_thresholds(app, "dp-run") == []


def test_request_digest_covers_every_array_the_evaluation_reads() -> None:
    from sampan.privacy.mods import request_digest

    digests = set()
    for threshold, counts in ((-1.0, [1, 1, 1]), (0.0, [1, 1, 1]), (0.0, [2, 1, 0])):
        model, arrays = _stump(threshold)
        arrays["edge_counts"] = np.array(counts, dtype=np.int64)
        digests.add(request_digest("evaluate", Message("r", 1, "coordinator", "bank", "evaluate", arrays=arrays,
                                                       meta={"model": model})))
    assert len(digests) == 3
