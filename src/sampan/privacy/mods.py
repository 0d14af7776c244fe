"""Party-side privacy as `Mod`s around a party's handlers (DESIGN: "privacy is composed, not sprinkled").

A party's protocol handlers (e.g. `sampan.horizontal.party`) compute exact answers on local rows and
never call a noise function or read a privacy flag. The mods below sit between the transport and those
handlers and decide, per request, what may leave the party and in which form:

- `policy_mod` (`sampan.privacy.admission`): the party's own admission rules (`PartyPrivacyPolicy`:
  minimum noise, required levels, its own ledger charged write-ahead, trust in the coordinator for
  central DP3), DP cannot be switched off (or changed) half-way through a run, one evaluated model per DP
  run and at most ``max_evaluations`` runs evaluating its holdout (recorded in its state dir before the
  evaluation leaves), evaluation bins.
- `dp1_mod`: the training row count (`describe` with ``dp_count``) and the clipped standardisation moments
  (`stats` with ``dp1``) through one Gaussian release each per run; a repeated request gets the same release.
- `dp2_mod`: DP-SGD replaces the handler's local training (`fit` with ``dp2``), sampling rate from the
  released row count, noise and sampling from the OS CSPRNG.
- `dp3_mod`: the client side of DP3: the update is clipped (and noise-shared in distributed mode).
- `release_mod`: under DP only outputs of charged mechanisms leave a `fit` (no row count, no loss, no
  DP-SGD diagnostics, no exact indicator bit unless adaptive clipping charges it).
- `dp_evaluation_mod`: under DP an evaluation is a function of the per-bin label counts only.
- `secagg_mod`: the SecAgg+ client: a `fit`/`evaluate` reply becomes one masked vector
  (`sampan.privacy.secagg`); `secagg_handlers` answer the protocol's own stages. A secure `fit` that carries
  ``evaluate`` (no DP only) also evaluates the model it receives, before training, and masks both in ONE
  vector [fit | evaluation]: one SecAgg instance per round, and the evaluation is admitted, digested and
  locked exactly as a separate `evaluate` of that model would be (`sampan.privacy.fit_evaluation`).

What each role learns: the coordinator learns only what these mods let through (listed per message
kind in the protocol's docstring and in `sampan.wire.catalogue`); other parties learn nothing from them.
Order matters and is fixed by `privacy_mods`: admission first, then the release filter, SecAgg masking,
DP evaluation, DP3, DP2, DP1 next to the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.metrics import ScoreHistogram
from sampan.privacy.admission import PartyDPState, _with_meta, policy_mod, request_digest
from sampan.privacy.dp3 import party_release
from sampan.privacy.dpsgd import DPSGDConfig, dp_sgd_train
from sampan.privacy.fit_evaluation import (
    empty_evaluation,
    evaluation_lock,
    evaluation_max_abs,
    evaluation_request,
    evaluation_scale,
)
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["PartyDPState", "dp1_moments", "hidden_indicator", "privacy_mods", "request_digest", "secagg_handlers"]

# trainer(model, params, X, y, cfg, anchor) -> (TrainResult, extra reply meta): how DP2 replaces local training
FitWith = Callable[[Message, Callable[..., tuple[Any, dict[str, Any]]]], Message]
# vectorize(kind, request, reply, private, public_rows) -> (vector, lock content or None, noise shares or None)
Vectorize = Callable[[str, Message, Message, bool, "int | None"], tuple[np.ndarray, "bytes | None", "int | None"]]


# --- DP1 -------------------------------------------------------------------------------------------
def dp1_noise(count: float, sums_z: np.ndarray, sums_z_sq: np.ndarray, noise_multiplier: float,
              ) -> tuple[float, np.ndarray, np.ndarray]:
    """One Gaussian release of [count, Σz, Σz²] over features clipped to [−1, 1]: one row adds at most 1 to
    each entry, so the (1 + 2d)-vector has L2 sensitivity sqrt(1 + 2d) under add/remove-one-row."""
    vector = np.concatenate([[count], sums_z, sums_z_sq])
    sensitivity = float(np.sqrt(vector.size))
    noised = np.asarray(GaussianMechanism(sensitivity, float(noise_multiplier) * sensitivity).release(vector))
    d = len(sums_z)
    return float(noised[0]), noised[1:1 + d], noised[1 + d:]


def clipped_moments(X: np.ndarray, bounds: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """Count and Σz, Σz² of z = (clip(x) − mid)/half-width in [−1, 1] (centring first avoids the cancellation
    of E[x²] − E[x]² far from zero); the coordinator maps them back with the same public ranges."""
    b = np.asarray(bounds, dtype=float)
    mid, half = b.mean(axis=1), (b[:, 1] - b[:, 0]) / 2
    Z = (np.clip(X, b[:, 0], b[:, 1]) - mid) / half
    return float(len(Z)), Z.sum(axis=0), np.einsum("ij,ij->j", Z, Z)


def dp1_moments(X: np.ndarray, settings: Mapping[str, Any]) -> tuple[float, np.ndarray, np.ndarray]:
    """DP1: count and the first two moments of every clipped feature under one Gaussian mechanism."""
    return dp1_noise(*clipped_moments(X, settings["bounds"]), float(settings["noise_multiplier"]))


def dp1_mod(state: PartyDPState) -> Mod:
    """DP1 at the data owner: the row count and the standardisation moments, each released once per run."""
    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind == "describe" and "dp_count" in msg.meta:
            exact = inner(_with_meta(msg, {k: v for k, v in msg.meta.items() if k != "dp_count"}))
            if msg.run_id not in state.released_rows:
                z = float(msg.meta["dp_count"]["noise_multiplier"])
                released = GaussianMechanism(1.0, z).release(np.array([float(exact.meta["n_train"])]))
                noised = float(np.asarray(released)[0])
                state.released_rows[msg.run_id] = max(1, int(round(noised)))  # rounding, floor: post-processing
            return msg.reply(
                "describe",
                meta={
                    "n_train": state.released_rows[msg.run_id],
                    "n_test": exact.meta["n_test"],
                    "feature_names": exact.meta["feature_names"],
                },
            )
        if msg.kind == "stats" and "dp1" in msg.meta:  # a repeat gets the same noise, uncharged
            settings = msg.meta["dp1"]
            if msg.run_id not in state.released_stats:
                exact = inner(_with_meta(msg, {"clip_bounds": settings["bounds"]}))
                state.released_stats[msg.run_id] = dp1_noise(
                    float(exact.meta["n"]), exact.arrays["sum"], exact.arrays["sum_sq"], settings["noise_multiplier"]
                )
            total, sums, sums_sq = state.released_stats[msg.run_id]
            return msg.reply(
                "stats", arrays={"sum": sums.copy(), "sum_sq": sums_sq.copy()}, meta={"n": total, "dp1": True}
            )
        return inner(msg)

    return mod


# --- DP2, DP3 and the release filter ----------------------------------------------------------------
def dp2_mod(state: PartyDPState, fit_with: FitWith) -> Mod:
    """DP2: the `fit` handler trains with DP-SGD instead of its own optimiser loop (``fit_with``)."""

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != "fit" or "dp2" not in msg.meta:
            return inner(msg)
        settings = DPSGDConfig(**{**msg.meta["dp2"], "public_rows": state.public_rows(msg)})

        def trainer(
            model: Any, params: np.ndarray, X: np.ndarray, y: np.ndarray, cfg: Any, anchor: np.ndarray | None
        ) -> tuple[Any, dict[str, Any]]:
            dp = dp_sgd_train(model, params, X, y, cfg, settings, anchor=anchor)  # sampling and noise: CSPRNG
            return dp.result, {
                "dp2": {
                    "steps": dp.steps,
                    "sampling_rate": dp.sampling_rate,
                    "noise_multiplier": dp.noise_multiplier,
                    "clipped_fraction": dp.clipped_fraction,
                }
            }

        return fit_with(msg, trainer)

    return mod


def dp3_mod() -> Mod:
    """DP3, client side: clip the update (and add this party's noise share in distributed mode)."""

    def mod(msg: Message, inner: Handler) -> Message:
        reply = inner(msg)
        if msg.kind != "fit" or "dp3" not in msg.meta or reply.is_error:
            return reply
        update, indicator = party_release(reply.arrays["update"], msg.meta["dp3"])
        return msg.reply(
            reply.kind, arrays={**reply.arrays, "update": update}, meta={**reply.meta, "dp3_indicator": indicator}
        )

    return mod


def hidden_indicator(msg: Message, private: bool) -> bool:
    """Under DP without adaptive clipping the DP3 indicator is unused, and an exact bit would be uncharged."""
    return private and "dp3" in msg.meta and not msg.meta["dp3"].get("count_sigma")


def release_mod(state: PartyDPState) -> Mod:
    """Under DP only outputs of charged mechanisms leave a `fit` (finding 1): no n, no loss, no DP-SGD
    diagnostics (steps and rate are the party's to compute, the clipped fraction is exact)."""

    def mod(msg: Message, inner: Handler) -> Message:
        reply = inner(msg)
        if msg.kind != "fit" or reply.is_error or not state.private(msg):
            return reply
        drop = {"n", "loss", "dp2"} | ({"dp3_indicator"} if hidden_indicator(msg, True) else set())
        return msg.reply(
            reply.kind, arrays=dict(reply.arrays), meta={k: v for k, v in reply.meta.items() if k not in drop}
        )

    return mod


def dp_evaluation_mod(state: PartyDPState) -> Mod:
    """Under DP (review R8-2) every field of an evaluation is a function of the per-bin label counts: sums at
    bin midpoints, no local metrics, no score beyond its bin."""

    def mod(msg: Message, inner: Handler) -> Message:
        reply = inner(msg)
        if msg.kind != "evaluate" or reply.is_error or not state.under_dp(msg.run_id):
            return reply
        histogram = ScoreHistogram.from_arrays(dict(reply.arrays)).centred()
        mid = np.clip((histogram.edges[:-1] + histogram.edges[1:]) / 2, 1e-12, 1 - 1e-12)
        loss_sum = float(-(histogram.pos @ np.log(mid) + histogram.neg @ np.log(1 - mid)))
        brier_sum = float(histogram.pos @ (1 - mid) ** 2 + histogram.neg @ mid**2)
        return msg.reply(
            reply.kind,
            arrays=histogram.to_arrays(),
            meta={"n": reply.meta["n"], "loss_sum": loss_sum, "brier_sum": brier_sum, "metrics": {}},
        )

    return mod


# --- secure aggregation (client) --------------------------------------------------------------------
def secagg_mod(
    state: PartyDPState, client: Callable[[], Any], vectorize: Vectorize, evaluate: Handler | None = None
) -> Mod:
    """SecAgg+ client: a `fit`/`evaluate` request that carries ``secagg`` is answered with one masked vector
    (uniformly random to the coordinator); ``vectorize`` says what the protocol sums from the handler's reply,
    ``evaluate`` (the party's evaluation, inner mods included) answers the evaluation a `fit` may carry."""

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind not in ("fit", "evaluate") or "secagg" not in msg.meta:
            return inner(msg)
        secagg = client()  # a party without a client refuses before computing anything
        reply = inner(msg)
        if reply.is_error:
            return reply
        private = state.private(msg)
        public = state.public_rows(msg) if private and msg.kind == "fit" else None
        vector, content, shares = vectorize(msg.kind, msg, reply, private, public)
        bases, contents = [request_digest(msg.kind, msg)], [content] if content is not None else []
        segments = None
        if msg.kind == "evaluate":  # every evaluation's content lock: its exact integer counts (R12-SAC-2)
            contents.append(evaluation_lock(reply))
        if msg.kind == "fit" and "evaluate" in msg.meta:  # admitted by policy_mod (SecAgg, no DP)
            if evaluate is None:
                raise PolicyRefused(f"party {state.name!r} cannot evaluate inside a 'fit' (no evaluation handler)")
            evaluation = evaluation_request(msg)  # the model it received, evaluated on its holdout
            carried = msg.meta["evaluate"]
            empty = bool(carried.get("empty"))  # its max_evaluations is spent: zeros, n = 0, no evaluation
            answer = empty_evaluation(evaluation, int(carried["bins"])) if empty else evaluate(evaluation)
            if answer.is_error:
                return answer
            part, _, _ = vectorize("evaluate", evaluation, answer, False, None)
            frac_bits = int(msg.meta["secagg"]["frac_bits"])
            segments = [
                (int(np.size(vector)), float(msg.meta["secagg"]["max_abs"])),
                (int(np.size(part)), evaluation_max_abs(frac_bits)),
            ]  # its own clamp (R12-SAC-5)
            vector = np.concatenate([vector, np.asarray(part, np.float64) * evaluation_scale(frac_bits)])
            if not empty:  # locked as a separate `evaluate` of this model is: the same model digest and the
                # same content lock (its integer counts), so neither part is unmasked for another survivor set
                bases.append(request_digest("evaluate", evaluation))
                contents.append(evaluation_lock(answer))
        masked = secagg.respond_masked(
            msg.arrays,
            msg.meta["secagg"],
            vector,
            run_id=msg.run_id,
            basis=bases,
            noise_parties=shares,
            content=contents,
            segments=segments,
        )
        return msg.reply(reply.kind, arrays={"masked": masked}, meta={"secagg": msg.meta["secagg"]["label"]})

    return mod


SECAGG_REPLIES = {
    "secagg_keys": "secagg_keys",
    "secagg_share": "secagg_shares",
    "secagg_consistency": "secagg_consistency",
    "secagg_unmask": "secagg_unmask",
}


def secagg_handlers(client: Callable[[], Any]) -> dict[str, Handler]:
    """The SecAgg+ stages a party answers (keys, shares, consistency signature, unmask shares)."""

    def handler(reply_kind: str) -> Handler:
        def answer(msg: Message) -> Message:
            return msg.reply(reply_kind, arrays=client().respond(msg.kind, msg.arrays, msg.meta, run_id=msg.run_id))

        answer.secagg_client = client  # type: ignore[attr-defined]  # which client answers (inspection, tests)
        return answer

    return {kind: handler(reply) for kind, reply in SECAGG_REPLIES.items()}


def privacy_mods(
    state: PartyDPState,
    *,
    fit_with: FitWith,
    secagg_client: Callable[[], Any],
    vectorize: Vectorize,
    evaluate_with: Handler | None = None,
) -> list[Mod]:
    """Every party-side privacy mod, outermost first (the order is part of the guarantee). ``evaluate_with``:
    the party's exact `evaluate` handler, for the evaluation a secure `fit` carries (wrapped here in the mods
    inside SecAgg, as a separate `evaluate` would be; admission is `policy_mod`'s, on the `fit`)."""
    inside = [dp_evaluation_mod(state), dp3_mod(), dp2_mod(state, fit_with), dp1_mod(state)]
    evaluate = _composed(inside, evaluate_with) if evaluate_with is not None else None
    return [policy_mod(state), release_mod(state), secagg_mod(state, secagg_client, vectorize, evaluate), *inside]


def _composed(mods: list[Mod], handler: Handler) -> Handler:
    """``handler`` with ``mods`` around it, the first outermost."""
    for mod in reversed(mods):
        handler = (lambda m, h: lambda msg: m(msg, h))(mod, handler)
    return handler
