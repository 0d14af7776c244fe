"""Secure vertical LR, its arithmetic, sealed channels and joint scoring: behaviour and what leaks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pytest

from sampan.crypto.channel import ChannelError, PartyKeys, SealedChannels
from sampan.crypto.ring import (
    SIGMOID_POLY,
    TRUNC_OFFSET,
    decode,
    encode,
    power_shares,
    to_signed,
    truncate_shares,
    uniform,
)
from sampan.data import make_sme_consortium
from sampan.data.table import PartyData
from sampan.metrics import roc_auc
from sampan.runtime.federation import build_inprocess_vertical
from sampan.transport.inprocess import InProcessTransport
from sampan.vertical.model import LocalScaler
from sampan.vertical.plain_lr import train_plain_vertical_lr
from sampan.vertical.secure_lr import min_batch_rows
from sampan.vertical.session import Splits, VerticalSession
from sampan.vertical.training import VerticalLRConfig, epoch_batches
from sampan.wire import Message
from sampan.wire import encode as wire_encode

RNG = np.random.default_rng(12)


# --- ring arithmetic --------------------------------------------------------------------------------
def _share(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s0 = uniform(RNG, x.shape)
    return s0, x - s0


def test_encode_decode_round_trip_including_negatives() -> None:
    x = np.array([-3.25, 0.0, 1e-3, 7.5, -1000.125])
    np.testing.assert_allclose(decode(encode(x, 16), 16), x, atol=2 ** -16)


def test_power_shares_give_exact_powers() -> None:
    z = RNG.integers(-2 ** 10, 2 ** 10, 1000).view(np.uint64)
    a = uniform(RNG, z.shape)
    a_pows = [a, a * a, a * a * a, a * a * a * a]
    shares = [_share(p) for p in a_pows]
    z0, z1 = _share(z)
    delta = (z0 - shares[0][0]) + (z1 - shares[0][1])
    p0 = power_shares(delta, [s[0] for s in shares], holder=0)
    p1 = power_shares(delta, [s[1] for s in shares], holder=1)
    zs = to_signed(z)
    for k in range(4):
        assert np.array_equal(to_signed(p0[k] + p1[k]), zs ** (k + 1))


@pytest.mark.parametrize("shift", [1, 16, 31, 40])
def test_truncation_is_exact_to_one_unit_for_the_whole_range(shift: int) -> None:
    x = np.concatenate([RNG.integers(-2 ** 61, 2 ** 61, 5000), [0, 1, -1, 2 ** 61, -2 ** 61]]).astype(np.int64)
    r = uniform(RNG, x.shape)
    c = sum(_share(x.view(np.uint64))) + TRUNC_OFFSET + r  # the opened value
    rt, msb = _share(r >> np.uint64(shift)), _share(r >> np.uint64(63))
    got = to_signed(
        truncate_shares(c, rt[0], msb[0], shift, holder=0) + truncate_shares(c, rt[1], msb[1], shift, holder=1)
    )
    err = got - (x >> shift)
    assert set(np.unique(err)) <= {0, 1}


def test_sigmoid_polynomial_is_close_in_range_and_restoring_outside() -> None:
    z = np.linspace(-8, 8, 2001)
    assert np.abs(SIGMOID_POLY(z) - 1 / (1 + np.exp(-z))).max() < 0.07
    assert SIGMOID_POLY.coef[-1] > 0  # beyond the fit range it pushes logits back, never runs away
    assert SIGMOID_POLY(12.0) > 1 and SIGMOID_POLY(-12.0) < 0
    terms = np.abs(SIGMOID_POLY.multipliers().view(np.int64).astype(float)) * (32 * 2**5) ** np.arange(6)
    assert terms.sum() < 2**62  # every |z| <= 32 stays inside the exact truncation range


# --- sealed channels --------------------------------------------------------------------------------
def _channels(names: Iterable[str], run_id: str = "run") -> dict[str, SealedChannels]:
    keys = {n: PartyKeys.generate() for n in names}
    return {n: SealedChannels(n, keys[n], {m: k.public_bytes for m, k in keys.items()}, run_id) for n in keys}


def test_sealed_envelopes_open_only_for_the_right_pair_and_detect_tampering() -> None:
    ch = _channels(["a", "b", "c"])
    msg = Message("run", 1, "a", "b", "x", {"v": np.arange(5.0)}, {"k": 1})
    env = ch["a"].seal("b", msg)
    assert ch["b"].open("a", env).arrays["v"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ChannelError):
        ch["c"].open("a", env)  # not addressed to c: wrong key
    with pytest.raises(ChannelError):
        ch["b"].open("c", env)  # claims the wrong sender
    bad = env.copy()
    bad[-1] ^= 1
    with pytest.raises(ChannelError):
        ch["b"].open("a", bad)
    assert np.array_equal(ch["a"].prg("b", "mask", 8), ch["b"].prg("a", "mask", 8))
    assert not np.array_equal(ch["a"].prg("b", "mask", 8), ch["a"].prg("c", "mask", 8))


# --- secure training --------------------------------------------------------------------------------
class RecordingTransport(InProcessTransport):
    """Keeps every encoded request and reply, as a wire tap would see them."""

    def __init__(self, apps) -> None:  # type: ignore[no-untyped-def]
        super().__init__(apps)
        self.captured: dict[str, list[bytes]] = {}

    def exchange(self, messages: Iterable[Message]) -> Iterator[Message]:
        for message in messages:
            self.captured.setdefault(message.recipient, []).append(wire_encode(message))
            for reply in super().exchange([message]):
                self.captured.setdefault(reply.sender, []).append(wire_encode(reply))
                yield reply


def _vertical_tables(n_features_partner2: bool = True) -> dict[str, PartyData]:
    tables = make_sme_consortium(3000, seed=11).vertical
    return tables if n_features_partner2 else {k: v for k, v in tables.items() if k != "delivery"}


def _session(tables: dict[str, PartyData], recording: bool = False):  # type: ignore[no-untyped-def]
    _, parties = build_inprocess_vertical(tables, with_baselines=True)  # one test drives the plaintext baseline
    apps = {n: p.app for n, p in parties.items()}
    transport = RecordingTransport(apps) if recording else InProcessTransport(apps)
    session = VerticalSession(transport, label_holder="bank", partners=[p for p in tables if p != "bank"], run_id="t1")
    session.connect()
    session.align()
    return session, parties, transport


def _plaintext_reference(parties, splits: Splits, config: VerticalLRConfig, seed: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """The same optimiser on the pooled aligned columns in floating point: the function secure LR computes."""
    names = list(parties)
    clip = config.clip_for(len(names))
    shared = config.shared_weights  # shared weights: partial logits are neither clipped nor rounded per party
    X, W = {}, {}
    y_all = parties["bank"].data.y[parties["bank"].psi.aligned_rows].astype(float)
    y = y_all[splits.train]
    for n in names:
        raw = parties[n].data.X[parties[n].psi.aligned_rows][splits.train]
        Xs = LocalScaler.fit(raw).transform(raw)
        if n == "bank":
            Xs = np.hstack([Xs, np.ones((len(Xs), 1))])
        X[n] = Xs
        W[n] = np.zeros(Xs.shape[1])
    rate = y.mean()
    W["bank"][-1] = np.log(rate / (1 - rate))
    rng = np.random.default_rng(seed)
    min_rows = min_batch_rows(max(x.shape[1] for x in X.values()))
    for _ in range(config.epochs):
        for rows in epoch_batches(rng.permutation(len(y)), config.batch_size, min_rows):
            z = (
                sum(X[n][rows] @ W[n] for n in names)
                if shared
                else sum(np.rint(np.clip(X[n][rows] @ W[n], -clip, clip) * 32) / 32 for n in names)
            )
            r = SIGMOID_POLY(z) - y[rows]
            for n in names:
                mask = np.ones_like(W[n])
                if n == "bank":
                    mask[-1] = 0
                W[n] = W[n] - config.learning_rate * (X[n][rows].T @ r / len(rows) + config.l2 * mask * W[n])
    return W


@pytest.mark.parametrize("shared", [False, True], ids=["plaintext-gradient", "shared-weights"])
@pytest.mark.parametrize("three_parties", [False, True])
def test_secure_lr_matches_plaintext_lr_on_pooled_columns(
    three_parties: bool, shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sampan.vertical.psi_party
    from sampan.privacy.randomness import seeded_generator

    # "It learned something" (each party's largest |weight| > 0.05) is shown on one seeded alignment order:
    # over CSPRNG orders (hence splits) the smallest party's largest weight spread 0.06-0.15 with three parties
    # (20 draws each mode, mean ~0.11, sd ~0.02: a few in a thousand runs under 0.05).
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    session, parties, _ = _session(_vertical_tables(three_parties))
    splits = session.splits(seed=1)
    # min_delta < 0: every epoch counts as the best, so the final weights are the last epoch's.
    config = VerticalLRConfig(
        epochs=3, batch_size=128, learning_rate=0.3, l2=1e-3, patience=3, min_delta=-1.0, shared_weights=shared
    )
    result = session.train(splits, config, seed=5)
    assert result.epochs_run == 3 and result.waves_per_batch == (4 if three_parties else 3) + (3 if shared else 0)
    reference = _plaintext_reference(parties, splits, config, seed=5)
    # plaintext gradient: a rounding step flipped by a random mask moves a weight ~2e-5; shared weights: the
    # summed logit is truncated to 2^-5 (one unit either way) where the float reference does not round it
    atol = 1e-3 if shared else 3e-4
    for name, party in parties.items():
        part = party.lr.part
        got = np.append(part.weights, part.intercept) if name == "bank" else part.weights
        np.testing.assert_allclose(got, reference[name], atol=atol, err_msg=name)
        assert np.abs(got).max() > 0.05  # it learned something
    metrics = session.evaluate(splits.test)
    # The jointly evaluated AUC is the AUC of the summed partial logits, computed here in the clear.
    logit = sum(p.lr.part.partial_logit(p.data.X[p.psi.aligned_rows][splits.test]) for p in parties.values())
    y_test = parties["bank"].data.y[parties["bank"].psi.aligned_rows][splits.test]
    assert metrics["n"] == len(splits.test)
    assert metrics["auc"] == pytest.approx(roc_auc(y_test, logit), abs=2e-3)


def _windows(array: np.ndarray, width: int = 4) -> list[bytes]:
    """Byte patterns of `width` consecutive values, as they would appear if the array were sent in clear."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return [flat[i : i + width].tobytes() for i in range(0, max(len(flat) - width, 1), max(len(flat) // 25, 1))]


def test_captured_messages_hold_no_features_labels_or_partial_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    import sampan.vertical.psi_party
    from sampan.privacy.randomness import seeded_generator

    # One seeded alignment order: the bank refuses a held-out evaluation whose pinned test rows hold no
    # default (5% default rate), which some CSPRNG orders produce for this small table's split.
    monkeypatch.setattr(sampan.vertical.psi_party, "_secure_permutation", lambda n: seeded_generator(1).permutation(n))
    session, parties, transport = _session(_vertical_tables(), recording=True)
    splits = session.splits(seed=1)
    session.train(splits, VerticalLRConfig(epochs=2, batch_size=256), seed=3)
    session.evaluate(splits.test)
    session.score([str(parties["bank"].data.ids[0])])
    wire = b"".join(b for blobs in transport.captured.values() for b in blobs)
    for name, party in parties.items():
        rows = party.psi.aligned_rows
        X = party.data.X[rows]
        secrets_in_clear = _windows(X) + _windows(np.ascontiguousarray(X[splits.train].T))
        Xs = LocalScaler.fit(X[splits.train]).transform(X[splits.train])
        secrets_in_clear += _windows(Xs) + _windows(encode(Xs, 16)) + _windows(Xs @ party.lr.part.weights)
        if party.data.y is not None:
            y = party.data.y[rows]
            secrets_in_clear += [
                y[:64].tobytes(),
                y[splits.train][:64].tobytes(),
                y[splits.train][:16].astype(np.float64).tobytes(),
            ]
        leaked = [w for w in secrets_in_clear if w in wire]
        assert not leaked, f"{name}: {len(leaked)} windows of private data found on the wire"


def test_the_leak_check_would_see_data_sent_in_clear() -> None:
    """Sanity check of the test above: an array sent in clear (the insecure baseline's way) is found."""
    session, parties, transport = _session(_vertical_tables(False), recording=True)
    splits = session.splits(seed=1)
    train_plain_vertical_lr(transport, "t1", session.roles, splits.train, VerticalLRConfig(batch_size=256), epochs=1)
    wire = b"".join(b for blobs in transport.captured.values() for b in blobs)
    plain_z = [decode_message(b).arrays["z"] for b in transport.captured["payments"] if b"plr.z" in b]
    assert plain_z and any(w in wire for w in _windows(plain_z[-1]))
    X = parties["bank"].data.X[:20]
    assert any(w in wire_encode(Message("r", 0, "a", "b", "k", {"x": X})) for w in _windows(X))


def decode_message(blob: bytes) -> Message:
    from sampan.wire import decode

    return decode(blob)


def test_early_stopping_restores_the_best_epoch() -> None:
    session, parties, _ = _session(_vertical_tables(False))
    splits = session.splits(seed=2)
    result = session.train(
        splits, VerticalLRConfig(epochs=40, patience=2, learning_rate=1.5, batch_size=64, min_delta=0.0), seed=1
    )
    assert result.stopped_early and result.epochs_run < 40
    assert result.best_epoch == int(np.argmin(result.val_brier)) + 1


# --- scoring ----------------------------------------------------------------------------------------
def test_joint_score_is_the_sum_of_partial_scores_and_flags_missing_partners() -> None:
    tables = _vertical_tables()
    session, parties, transport = _session(tables, recording=True)
    splits = session.splits(seed=1)
    session.train(splits, VerticalLRConfig(epochs=3), seed=1)
    bank_ids = [str(i) for i in tables["bank"].ids]
    delivery_ids = {str(i) for i in tables["delivery"].ids}
    payments_ids = {str(i) for i in tables["payments"].ids}
    everywhere = next(i for i in bank_ids if i in delivery_ids and i in payments_ids)
    no_delivery = next(i for i in bank_ids if i not in delivery_ids and i in payments_ids)
    before = sum(len(v) for v in transport.captured.values())
    request = session.score([everywhere, no_delivery])
    results = parties["bank"].scoring.results[request]
    expected = []
    for applicant in (everywhere, no_delivery):
        z = 0.0
        for party in parties.values():
            hit = np.flatnonzero(party.data.ids == applicant)
            if len(hit):
                z += float(party.lr.part.partial_logit(party.data.X[hit])[0])
        expected.append(z)
    assert [r.applicant for r in results] == [everywhere, no_delivery]
    np.testing.assert_allclose([r.logit for r in results], expected, atol=1e-3)
    assert results[0].missing_at == [] and results[1].missing_at == ["delivery"]
    assert all(0 < r.probability_of_default < 1 and 300 < r.score < 900 for r in results)
    assert (
        results[0].reasons
        and results[0].reasons[-1]["logit_contribution"] <= results[0].reasons[0]["logit_contribution"]
    )
    # Nothing the coordinator saw during scoring names the applicant or carries the PD.
    scoring_wire = b"".join(b for blobs in transport.captured.values() for b in blobs[-3:])
    assert everywhere.encode() not in scoring_wire and no_delivery.encode() not in scoring_wire
    assert np.float64(results[0].probability_of_default).tobytes() not in scoring_wire
    assert sum(len(v) for v in transport.captured.values()) - before <= 2 * (1 + 2 + 1)  # three waves


def test_unknown_applicant_is_answered_alike_and_flagged_only_at_the_bank() -> None:
    # review R12-VER-8: an error here told the coordinator who is not a bank customer; the bank now scores the
    # applicant with its own part neutral and keeps the flag in its own result
    session, parties, _ = _session(_vertical_tables(False))
    session.train(session.splits(seed=1), VerticalLRConfig(epochs=1), seed=1)
    request = session.score(["BR99999999-not-a-customer"])
    [result] = parties["bank"].scoring.results[request]
    assert result.unknown_at_bank and result.applicant == "BR99999999-not-a-customer"


def test_session_rejects_bad_party_lists() -> None:
    transport, _ = build_inprocess_vertical(_vertical_tables(False))
    with pytest.raises(ValueError, match="both the label holder and a partner"):
        VerticalSession(transport, label_holder="bank", partners=["bank", "payments"])
    with pytest.raises(ValueError, match="not reachable"):
        VerticalSession(transport, label_holder="bank", partners=["delivery"])
    with pytest.raises(ValueError, match="too few"):
        Splits.random(5)
    with pytest.raises(ValueError, match="learning_rate"):
        VerticalLRConfig(learning_rate=0)


def test_one_pass_polynomial_shares_equal_the_power_expansion() -> None:
    from sampan.crypto.ring import poly_shares

    z = RNG.integers(-(2**10), 2**10, 500).view(np.uint64)
    a = uniform(RNG, z.shape)
    pows, p = [], a.copy()
    for _ in range(5):
        pows.append(p)
        p = p * a
    shares = [_share(x) for x in pows]
    delta = sum(_share(z)) - a
    m = SIGMOID_POLY.fixed_multipliers
    got = poly_shares(delta, [s[0] for s in shares], m, holder=0) + poly_shares(
        delta, [s[1] for s in shares], m, holder=1
    )
    zs = to_signed(z).astype(object)
    want = [sum(int(m.view(np.int64)[k]) * int(v) ** k for k in range(6)) % 2**64 for v in zs]
    assert got.tolist() == want


# --- finding 14: capacity of the fixed-point ring and the polynomial's fit range ----------------------
def test_logit_clip_beyond_the_ring_or_the_fit_range_is_refused() -> None:
    with pytest.raises(ValueError, match="beyond the fixed-point ring's capacity"):
        VerticalLRConfig(logit_clip=32).clip_for(2)  # 1064fb2: residuals silently wrapped
    with pytest.raises(ValueError, match="beyond the sigmoid polynomial's fit range"):
        VerticalLRConfig(logit_clip=5).clip_for(2)
    assert VerticalLRConfig().clip_for(3) == pytest.approx(SIGMOID_POLY.fit_bound / 3)
    assert VerticalLRConfig(logit_clip=4).clip_for(2) == 4
    # At the ring's capacity every polynomial term still fits the exact truncation range.
    capacity = SIGMOID_POLY.ring_capacity()
    units = capacity * 2**SIGMOID_POLY.in_bits
    terms = [abs(int(m)) * int(units) ** k for k, m in enumerate(SIGMOID_POLY.multipliers().view(np.int64))]
    assert (
        sum(terms)
        < 2**62
        <= sum(abs(int(m)) * int(units + 1) ** k for k, m in enumerate(SIGMOID_POLY.multipliers().view(np.int64)))
        + 2**47
    )


def _correlated_ratios(n: int, seed: int = 0) -> dict[str, PartyData]:
    """64 heavy-tailed, strongly correlated financial ratios (one latent factor) over 3 parties, ~13% positives:
    the shape of the unseen bankruptcy data on which 1064fb2 printed validation Brier scores in the millions."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:06d}" for i in range(n)], dtype=object)
    latent = rng.normal(size=(n, 1))
    X = np.sinh(latent @ rng.normal(size=(1, 64)) + 0.3 * rng.normal(size=(n, 64)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(3 * latent[:, 0] - 4)))).astype(np.int8)
    cols = np.array_split(rng.permutation(64), 3)
    return {
        name: PartyData(name, ids, X[:, c], y if name == "bank" else None, [f"r{j}" for j in c])
        for name, c in zip(("bank", "p1", "p2"), cols, strict=False)
    }


@pytest.mark.slow
def test_validation_brier_stays_a_probability_score_on_wide_correlated_ratios() -> None:
    """1064fb2 let the summed logit reach 32 where the sigmoid polynomial is 1272: with lr 0.2 on 64 correlated
    columns training overshot past the fit range, residuals exploded and the validation 'Brier' hit 1.2e6 from
    epoch 4 on this very data (checked on 1064fb2).
    Now the summed logit stays inside the fit range, so residuals stay within [-1.07, 1.07].
    That bound comes from clipping each partial logit to logit_clip, which only the plaintext-gradient mode
    does: shared weights (the default since) cannot clip their shared logits and instead stop with an error
    when a run leaves the range (pinned below). Run under the default, this test failed in ~1 of 30 runs
    (the aligned order, hence the split, is a fresh CSPRNG draw each run; some splits diverge at lr 0.2), so
    it names the mode whose guarantee it checks."""
    tables = _correlated_ratios(4000)
    transport, parties = build_inprocess_vertical(tables)
    session = VerticalSession(transport, label_holder="bank", partners=["p1", "p2"], run_id="ratios")
    session.connect()
    session.align()
    splits = session.splits(seed=0)
    result = session.train(
        splits, VerticalLRConfig(epochs=12, learning_rate=0.2, patience=12, shared_weights=False), seed=0
    )
    assert max(result.val_brier) <= 1.07**2 and min(result.val_brier) < 0.1
    assert session.evaluate(splits.test)["auc"] > 0.85


# --- shared weights -----------------------------------------------------------------------------------
def test_shared_weights_that_leave_the_polynomial_range_stop_training_with_a_clear_error() -> None:
    """Shared logits cannot be clipped: a run whose logits leave the sigmoid polynomial's range (here the bank's
    intercept share pushed to 30 before validation, as a diverged run would be) drives the opened validation
    score above 1, and training stops."""
    from sampan.crypto.ring import encode as ring_encode
    from sampan.vertical.secure_lr import WEIGHT_BITS

    session, parties, _ = _session(_vertical_tables(False))
    splits = session.splits(seed=1)
    bank = parties["bank"]
    original = bank.app._handlers["vlr.wshare"]

    def push(msg: Message) -> Message:
        reply = original(msg)
        if msg.meta.get("validation"):
            bank.lr.state.w_own[-1] = ring_encode(30.0, WEIGHT_BITS)[()]
        return reply

    bank.app._handlers["vlr.wshare"] = push
    # the squared residuals wrap the ring: the score decodes negative (review R10-A3: it used to become the best epoch)
    with pytest.raises(ValueError, match="(above 1|below 0), which a probability score cannot reach"):
        session.train(splits, VerticalLRConfig(epochs=2, batch_size=128), seed=1)


def test_shared_weights_settings_in_a_run_file() -> None:
    from sampan.config import ConfigError
    from sampan.vertical.config import VerticalRunConfig

    base = {
        "label_holder": "bank",
        "id": "ID",
        "parties": [
            {"name": "bank", "path": "b.csv", "label": "y", "features": [f"b{i}" for i in range(9)]},
            {"name": "p", "path": "p.csv", "features": ["x"]},
        ],
    }
    assert VerticalRunConfig.model_validate({"vertical": base}).lr_config().shared_weights  # the default
    leaky = {**base, "lr": {"shared_weights": False, "epochs": 60, "batch_size": 512}}
    with pytest.raises(ConfigError, match="vertical.lr.shared_weights: .*allow_gradient_label_leakage"):
        VerticalRunConfig.model_validate({"vertical": leaky}).lr_config()
    accepted = {**base, "lr": {**leaky["lr"], "allow_gradient_label_leakage": True}}
    assert not VerticalRunConfig.model_validate({"vertical": accepted}).lr_config().shared_weights
    with pytest.raises(ConfigError, match="learning_rate"):
        VerticalRunConfig.model_validate({"vertical": {**base, "lr": {"learning_rate": 3.0}}}).lr_config()
