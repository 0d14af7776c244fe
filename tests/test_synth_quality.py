"""Statistical behaviour: a planted strong dependence survives synthesis at epsilon = 4."""

from __future__ import annotations

import numpy as np

from sampan.privacy.randomness import seeded_generator
from sampan.synth import SynthColumn, SynthConfig, SynthSchema, fit_federated, fit_synthesizer, generate
from sampan.synth.tstr import train_and_score
from sampan.transport.inprocess import InProcessTransport

LETTERS = tuple("ABCDEF")
SCHEMA = SynthSchema(
    columns=(
        SynthColumn("label", "categorical", ("0", "1")),
        SynthColumn("a", "categorical", LETTERS),
        SynthColumn("b", "categorical", LETTERS),
        SynthColumn("x", "numeric", bounds=(-10.0, 10.0)),
        SynthColumn("z", "numeric", bounds=(-10.0, 10.0)),
        *(SynthColumn(f"noise{i}", "numeric", bounds=(0.0, 100.0)) for i in range(4)),
        SynthColumn("colour", "categorical", ("red", "green", "blue")),
    ),
    label="label",
)


def _planted(n: int, seed: int) -> dict[str, np.ndarray]:
    """b copies a 85% of the time; z = x + small noise; the label depends on x; the rest is noise."""
    rng = np.random.default_rng(seed)
    letters = np.array(LETTERS, dtype=object)
    a = rng.choice(letters, n)
    b = np.where(rng.random(n) < 0.85, a, rng.choice(letters, n))
    x = np.clip(rng.normal(0, 2.5, n), -10, 10)
    z = np.clip(x + rng.normal(0, 0.5, n), -10, 10)
    label = np.where(rng.random(n) < 1 / (1 + np.exp(-(x - 1))), "1", "0").astype(object)
    table = {"label": label, "a": a, "b": b, "x": x, "z": z,
             "colour": rng.choice(np.array(["red", "green", "blue"], dtype=object), n)}
    table.update({f"noise{i}": rng.random(n) * 100 for i in range(4)})
    return table


def _cramers_v(u: np.ndarray, v: np.ndarray) -> float:
    cats_u, iu = np.unique(u, return_inverse=True)
    cats_v, iv = np.unique(v, return_inverse=True)
    counts = np.zeros((cats_u.size, cats_v.size))
    np.add.at(counts, (iu, iv), 1)
    expected = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (counts.sum() * (min(counts.shape) - 1))))


def test_planted_pairwise_dependence_survives_at_epsilon_4() -> None:
    real = _planted(5000, 0)
    model = fit_synthesizer(real, SCHEMA, SynthConfig(epsilon=4.0), rng=seeded_generator(11))
    edges = {frozenset(e) for e in model.edges}
    assert frozenset({"a", "b"}) in edges and frozenset({"x", "z"}) in edges
    synth, _ = generate(model, 5000, rng=seeded_generator(12))
    v_real, v_synth = _cramers_v(real["a"], real["b"]), _cramers_v(synth["a"], synth["b"])
    assert v_real > 0.8 and v_synth > 0.75
    assert (synth["a"] == synth["b"]).mean() > 0.8
    r_real = np.corrcoef(real["x"], real["z"])[0, 1]
    r_synth = np.corrcoef(synth["x"], synth["z"])[0, 1]
    assert r_real > 0.95 and r_synth > 0.8  # quantisation to DP bins costs some; independence would be 0
    # independent columns stay (nearly) independent
    assert abs(np.corrcoef(synth["noise0"], synth["x"])[0, 1]) < 0.1
    # the label signal is kept: a model trained on synthetic rows ranks real rows well
    holdout = _planted(3000, 1)
    assert train_and_score(synth, holdout, SCHEMA) > train_and_score(real, holdout, SCHEMA) - 0.03


def test_federated_synthesis_recovers_what_central_does() -> None:
    real = _planted(6000, 2)
    parts = np.array_split(np.random.default_rng(3).permutation(6000), 3)
    banks = {f"bank{i}": {k: v[idx] for k, v in real.items()} for i, idx in enumerate(parts)}
    model = fit_federated(banks, SCHEMA, SynthConfig(epsilon=4.0), transport=InProcessTransport,
                          rng=seeded_generator(13))
    assert frozenset({"a", "b"}) in {frozenset(e) for e in model.edges}
    synth, _ = generate(model, 6000, rng=seeded_generator(14))
    assert (synth["a"] == synth["b"]).mean() > 0.75
    assert abs((synth["label"] == "1").mean() - (real["label"] == "1").mean()) < 0.03
    assert model.n_hat == __import__("pytest").approx(6000, rel=0.05)
