"""The party's privacy around its per-group score histograms (`sampan.horizontal.group_evaluation`), as a `Mod`.

Before anything is computed the party admits the request: once per run (a repeat, even an identical one, is
refused: fresh noise or another grouping of the same rows would let the coordinator difference or average), only
in a run where it answered an evaluation (so it counts against ``max_evaluations``) and, under DP, only on the
model it evaluated (`request_digest` of the `evaluate` it answered), never with ``secagg`` in the request. Then:

- without DP (no ``group_dp`` and no DP answered in the run): the exact counts leave, except that every level
  holding fewer than `MIN_CELL_ROWS` of its holdout rows is zeroed and named in ``meta.withheld`` (row indices of
  the reply), so a group of one record gives nothing but "small"; the receipt lists the counts as revealed;
- under DP (the request carries ``group_dp``, or the party answered a DP request of the run, or its policy
  requires DP): ``group_dp.noise_multiplier`` z is checked against its minimum and charged write-ahead to its own
  ledger (`PartyPrivacyPolicy.admit_histograms`, DP1, sensitivity² = number of group columns: a row falls in one
  level of each column and one bin, changing one count by one), then every count gets Gaussian noise of
  σ = z·sqrt(columns) (`GaussianMechanism`, CSPRNG); no suppression (it would depend on exact counts).

What each role learns: the coordinator learns that reply, once per run; holdout rows are outside the training
DP unit, and under DP the reply is the output of the charged mechanism. Nothing goes to another party.
"""

from __future__ import annotations

import math

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.privacy.admission import PartyDPState, request_digest
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["MIN_CELL_ROWS", "group_release_mod"]

MIN_CELL_ROWS = 10


def _refuse(state: PartyDPState, why: str) -> PolicyRefused:
    return PolicyRefused(f"party {state.name!r} refuses 'evaluate_groups': {why}")


def _admit(state: PartyDPState, msg: Message, answered: set[str]) -> None:
    if msg.run_id in answered:
        raise _refuse(state, "it answers one group evaluation per run")
    if "secagg" in msg.meta:
        raise _refuse(state, "group histograms are not summed under secure aggregation")
    evaluation = Message(msg.run_id, msg.step, msg.sender, msg.recipient, "evaluate",
                         arrays={k: v for k, v in msg.arrays.items() if k in ("params", "mean", "scale", "impute")},
                         meta={"model": msg.meta.get("model")})
    if msg.run_id not in state.evaluated:
        raise _refuse(state, "groups are evaluated only after the run's evaluation (counted by max_evaluations)")
    if state.under_dp(msg.run_id) and state.evaluated[msg.run_id] != request_digest("evaluate", evaluation):
        raise _refuse(state, "under DP groups are evaluated only on the model it evaluated in this run")


def _charged_mechanism(state: PartyDPState, msg: Message) -> GaussianMechanism:
    """Check the noise and charge the party's own ledger (persisted) before any count is computed."""
    settings = msg.meta.get("group_dp")
    if not isinstance(settings, dict):
        raise _refuse(state, "under DP the group counts must be noised (no group_dp settings sent)")
    columns = len(msg.meta.get("groups") or [])
    z = settings.get("noise_multiplier")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0 or columns < 1:
        raise _refuse(state, f"group_dp.noise_multiplier={z!r} is not a positive number")
    sensitivity = math.sqrt(columns)
    state.policy.admit_histograms(state.name, "groups", instance=msg.run_id, release="group_evaluation",
                                  sigma=float(z) * sensitivity, sensitivity2=float(columns), count=1)
    state.dp_runs.add(msg.run_id)
    return GaussianMechanism.from_noise_multiplier(sensitivity, float(z))


def _noised(mechanism: GaussianMechanism, reply: Message) -> Message:
    arrays = {key: np.asarray(mechanism.release(np.asarray(reply.arrays[key], dtype=float)))
              for key in ("pos", "neg")}
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays, {"dp": True})


def _suppressed(reply: Message) -> Message:
    pos, neg = np.array(reply.arrays["pos"], dtype=float), np.array(reply.arrays["neg"], dtype=float)
    small = (pos + neg).sum(axis=1) < MIN_CELL_ROWS
    pos[small], neg[small] = 0.0, 0.0
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, {"pos": pos, "neg": neg},
                   {"withheld": [int(i) for i in np.flatnonzero(small)]})


def group_release_mod(state: PartyDPState, kind: str = "evaluate_groups") -> Mod:
    """Once per run, on the evaluated model; DP noise (charged) or small-group suppression (see the docstring)."""
    answered: set[str] = set()

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != kind:
            return inner(msg)
        with state.lock:
            _admit(state, msg, answered)
            private = "group_dp" in msg.meta or state.under_dp(msg.run_id)
            mechanism = _charged_mechanism(state, msg) if private else None  # before the counts are computed
            answered.add(msg.run_id)
            reply = inner(msg)
            if reply.is_error:
                return reply
            return _noised(mechanism, reply) if mechanism is not None else _suppressed(reply)

    return mod
