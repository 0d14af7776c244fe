"""The party's privacy around its per-group score histograms (`sampan.horizontal.group_evaluation`), as a `Mod`.

Before anything is computed or charged the party admits the request: one answer per run, remembered in its
state dir (`sampan.privacy.run_marks.AnswerBook`, written before the answer leaves, so an agent restart or a
re-opened run id changes nothing: reviews R13-GRP-3/9): an identical repeat (a resumed run, R13-GRP-7) gets
the stored answer back, uncharged and without fresh noise; any other request is refused (another grouping of
the same rows would let the coordinator difference, fresh noise would let it average). Only in a run where it
answered an evaluation (so it counts against ``max_evaluations``), only on a model it evaluated in the run
(`request_digest` of an `evaluate` it answered, with or without DP: R13-GRP-8), never with ``secagg``, and
only for specs its own check accepts (``check``: the group columns of its schema, each once, a category's
levels exactly its one-hot columns: R13-GRP-2). Then:

- without DP (no ``group_dp`` and no DP answered in the run, `PartyDPState.dp_runs` being persisted too: R13-GRP-4):
  the exact counts leave, except that every level holding fewer than `MIN_CELL_ROWS` of its holdout rows is
  zeroed and named in ``meta.withheld`` (row indices of the reply), AND, per group column, more levels
  (smallest first) until the rows the coordinator can derive as "evaluated minus shown" (the withheld levels
  plus the rows in no level, e.g. a missing value) number 0 or at least `MIN_CELL_ROWS` (secondary
  suppression, R13-GRP-1: the run's exact evaluation histogram gives the total, so a lone withheld level would
  otherwise be its complement); the receipt lists the counts as revealed;
- under DP (the request carries ``group_dp``, or the party answered a DP request of the run, or its policy
  requires DP): ``group_dp.noise_multiplier`` z is checked against its minimum and charged write-ahead to its own
  ledger (`PartyPrivacyPolicy.admit_histograms`, DP1, sensitivity² = number of group columns: a row falls in at
  most one level of each column, by construction and by the check, and one bin, changing one count by one),
  then every count gets Gaussian noise of σ = z·sqrt(columns) (`GaussianMechanism`, CSPRNG); no suppression.

What each role learns: the coordinator learns that reply, once per run; holdout rows are outside the training
DP unit, and under DP the reply is the output of the charged mechanism. Without DP, secondary suppression
defends one grouping against the run's evaluation; it cannot defend two group columns whose levels the
coordinator chose to nearly coincide (README: use DP). Nothing goes to another party.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.privacy.admission import PartyDPState, request_digest
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.privacy.run_marks import AnswerBook
from sampan.wire import Message

__all__ = ["MIN_CELL_ROWS", "group_release_mod", "withheld_levels"]

MIN_CELL_ROWS = 10
REPLY_KIND = "group_evaluation"
_MODEL_ARRAYS = ("params", "mean", "scale", "impute")


def _refuse(state: PartyDPState, why: str) -> PolicyRefused:
    return PolicyRefused(f"party {state.name!r} refuses 'evaluate_groups': {why}")


def _as_evaluation(msg: Message) -> Message:
    return Message(msg.run_id, msg.step, msg.sender, msg.recipient, "evaluate",
                   arrays={k: v for k, v in msg.arrays.items() if k in _MODEL_ARRAYS},
                   meta={"model": msg.meta.get("model")})


def _request(msg: Message) -> str:
    """Digest of everything the answer depends on: the model (as `request_digest` canonicalises it) and the
    request's groups, bins and DP settings."""
    asked = {k: msg.meta.get(k) for k in ("groups", "bins", "group_dp")}
    text = json.dumps(asked, sort_keys=True, default=str)
    return hashlib.sha256(f"{request_digest('evaluate', _as_evaluation(msg))}|{text}".encode()).hexdigest()


def _admit(state: PartyDPState, msg: Message) -> None:
    if "secagg" in msg.meta:
        raise _refuse(state, "group histograms are not summed under secure aggregation")
    if msg.run_id not in state.evaluated:
        raise _refuse(state, "groups are evaluated only after the run's evaluation (counted by max_evaluations)")
    digest = request_digest("evaluate", _as_evaluation(msg))
    if digest not in {state.evaluated[msg.run_id], *state.evaluated_models.get(msg.run_id, ())}:
        raise _refuse(state, "groups are evaluated only on the model it evaluated in this run")


def _charged_mechanism(state: PartyDPState, msg: Message) -> GaussianMechanism:
    """Check the noise and charge the party's own ledger (persisted) before any count is computed."""
    settings = msg.meta.get("group_dp")
    if not isinstance(settings, dict):
        raise _refuse(state, "under DP the group counts must be noised (no group_dp settings sent)")
    columns = len(msg.meta.get("groups") or [])
    z = settings.get("noise_multiplier")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0 or columns < 1:
        raise _refuse(state, f"group_dp.noise_multiplier={z!r} is not a positive number")
    sensitivity = math.sqrt(columns)  # checked specs: one level per column at most for any row
    state.policy.admit_histograms(state.name, "groups", instance=msg.run_id, release="group_evaluation",
                                  sigma=float(z) * sensitivity, sensitivity2=float(columns), count=1)
    state.dp_runs.add(msg.run_id)
    return GaussianMechanism.from_noise_multiplier(sensitivity, float(z))


def _noised(mechanism: GaussianMechanism, reply: Message) -> Message:
    arrays = {key: np.asarray(mechanism.release(np.asarray(reply.arrays[key], dtype=float)))
              for key in ("pos", "neg")}
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, arrays, {"dp": True})


def withheld_levels(counts: np.ndarray, unassigned: int, minimum: int = MIN_CELL_ROWS) -> np.ndarray:
    """One group column's withheld levels (a boolean mask) from its per-level row counts and the rows in no level:
    every level under ``minimum``, then more (smallest first) until the rows derivable as the evaluation's total
    minus the shown levels number 0 or at least ``minimum``."""
    withheld = counts < minimum
    hidden = unassigned + int(counts[withheld].sum())
    while 0 < hidden < minimum and not withheld.all():
        shown = np.flatnonzero(~withheld)
        smallest = shown[np.argmin(counts[shown])]
        withheld[smallest] = True
        hidden += int(counts[smallest])
    return withheld


def _suppressed(reply: Message, levels: Sequence[int], rows: int) -> Message:
    """Small levels zeroed per group column, with secondary suppression (`withheld_levels`)."""
    pos, neg = np.array(reply.arrays["pos"], dtype=float), np.array(reply.arrays["neg"], dtype=float)
    counts = (pos + neg).sum(axis=1)
    small = np.zeros(len(counts), dtype=bool)
    start = 0
    for width in levels:
        column = slice(start, start + width)
        small[column] = withheld_levels(counts[column], rows - int(counts[column].sum()))
        start += width
    pos[small], neg[small] = 0.0, 0.0
    return Message(reply.run_id, reply.step, reply.sender, reply.recipient, reply.kind, {"pos": pos, "neg": neg},
                   {"withheld": [int(i) for i in np.flatnonzero(small)]})


def group_release_mod(state: PartyDPState, check: Callable[[Message], list[int]],
                      kind: str = "evaluate_groups") -> Mod:
    """Once per run (persisted; an identical repeat replays), on an evaluated model, specs the party's ``check``
    accepts (it returns each group column's number of levels); DP noise (charged) or suppression (docstring)."""
    answers = AnswerBook(state.state_dir / "group-answers" if state.state_dir is not None else None, state.name)

    def mod(msg: Message, inner: Handler) -> Message:
        if msg.kind != kind:
            return inner(msg)
        with state.lock:
            request = _request(msg)
            stored = answers.get(msg.run_id)
            if stored is not None:
                if stored[0] != request:
                    raise _refuse(state, "it answers one group evaluation per run (an identical repeat gets the "
                                  "same answer)")
                arrays, meta = stored[1]
                return msg.reply(REPLY_KIND, arrays=arrays, meta=meta)
            _admit(state, msg)
            levels = check(msg)  # the specs against its own schema, before any charge
            private = "group_dp" in msg.meta or state.under_dp(msg.run_id)
            mechanism = _charged_mechanism(state, msg) if private else None  # before the counts are computed
            reply = inner(msg)
            if reply.is_error:
                return reply
            released = _noised(mechanism, reply) if mechanism is not None else \
                _suppressed(reply, levels, state.test_rows)
            answers.put(msg.run_id, request, (dict(released.arrays), dict(released.meta)))  # before it leaves
            return released

    return mod
