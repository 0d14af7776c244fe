"""F-DROPOUT-RESUME's mark (R16B-6): the leaving party's last update carries a mark; the final model may carry it once.

Why: the party that leaves sees no model after it left, so it cannot see what later rounds aggregate; a platform that
never drops it and files its last update again in every later round passed. The verifier controls that last update, so
it adds ``size`` x ``direction`` to it (the kit's `update_hook`, any kit, under secure aggregation too: the mark is
added before masking). The update marked is the one sent in the TaskSpec's dropout round (the round the hook receives,
REV16-3), however many updates came before it. ``direction`` is the quietest direction of the job's pooled, standardised
columns (smallest eigenvalue of their correlation matrix; German credit's one-hot columns give an exact null direction):
training neither pulls the mark back nor drifts along it, and the scores hardly move (``size`` x sqrt(eigenvalue) =
`LOGIT_SD` on the logit scale before the party's share shrinks it).

What an honest mean does: round ``after``'s global model takes the party's share s of the mark (its row share under
a row-weighted mean, 1 / parties under a plain one); the later rounds, without the party, keep it: the final model
carries about s (measured: 0.20 on the weak platform, Sampan in-process and deployed, and Flower; 0.17-0.21 on
Taiwan's columns). The reference is the model the marked update was trained from (the last model received before
it), not a later one: Flower also sends the party its last round's aggregate, which carries the mark once. A
platform that files that update again in each of the k later rounds carries 1 - (1 - s)^(k + 1) under a weighted
mean of weights (0.67 at s = 0.2, k = 4) and (k + 1) s under a mean of changes. Fail: carried >
`dropout_mark_repeat_max` x the larger of the two shares. Assumes the default aggregator "mean" (each round's global
model is a mean of that round's updates, as F-AGG-WEIGHTED checks for one round): server momentum or an adaptive
server optimiser carries any update more than once and would fail here (said in the verdict); a robust rule that
ignores the party carries ~0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.verify.catalogue.jobs import PartySpec
from sampan.verify.thresholds import value

__all__ = ["EIGEN_FLOOR", "LOGIT_SD", "Mark"]

EIGEN_FLOOR = 0.01  # an exact null direction still gets a finite mark (size LOGIT_SD / 0.1 = 5)
LOGIT_SD = 0.5  # the mark's effect on the party's own scores (logit standard deviation), before its share


def _pooled(parties: list[PartySpec], columns: list[str]) -> np.ndarray:
    rows: list[list[float]] = []
    for p in parties:
        data = p.data or {}
        idx = [list(data["columns"]).index(c) for c in columns]
        rows += [[float(r[i]) for i in idx] for r in data["rows"]]
    return np.asarray(rows, dtype=np.float64)


@dataclass
class Mark:
    """The mark of one dropout job: its direction over [coefficients..., intercept], its size, the round it goes in."""

    direction: np.ndarray
    size: float
    eigenvalue: float
    after: int
    share: float  # the larger of the party's row share and 1 / parties: the most an honest mean gives it
    calls: int = 0
    marked: list[int] = field(default_factory=list)  # the rounds whose update carried the mark
    plane: Any = None  # the verifier's party (its tap): the model the marked update was trained from
    base: np.ndarray | None = None  # that model, [coefficients..., intercept]

    @classmethod
    def plan(cls, parties: list[PartySpec], columns: list[str], after: int) -> Mark:
        """The quietest direction of the job's pooled rows (the verifier holds every party's rows)."""
        X = _pooled(parties, columns)
        sd = X.std(axis=0)
        Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        vals, vecs = np.linalg.eigh(Z.T @ Z / max(Z.shape[0], 1))
        lam = float(max(vals[0], EIGEN_FLOOR))
        rows = [len((p.data or {}).get("rows", [])) for p in parties]
        share = max(rows[-1] / max(sum(rows), 1), 1.0 / len(parties))
        return cls(np.append(vecs[:, 0], 0.0), LOGIT_SD / float(np.sqrt(lam)), float(max(vals[0], 0.0)), after, share)

    def reset(self, plane: Any) -> Mark:
        """Ready for a (re)submitted job whose verifier party is ``plane``."""
        self.calls, self.marked, self.plane, self.base = 0, [], plane, None
        return self

    def _latest_received(self) -> np.ndarray | None:
        """The last model-sized float vector the party received so far (the model its update starts from)."""
        tap = getattr(self.plane, "tap", None)
        for m in reversed(list(getattr(tap, "messages", []))):
            if m.direction != "received":
                continue
            for key in ("weights", "params", *m.payload):
                a = np.asarray(m.payload.get(key, []))
                if a.dtype.kind == "f" and a.size == self.direction.size:
                    return a.reshape(-1).astype(np.float64)
        return None

    def hook(self, round_no: int, weights: np.ndarray) -> np.ndarray:
        """The kit's update hook: the update the party sends in round ``after`` (the TaskSpec's dropout round, its
        last before leaving) gets the mark; the others go as sent. By round, not by call count (REV16-3): a platform
        that hides round 1 from the party makes its round-2 update the first call, and a count-based mark waited for a
        second call that never came."""
        self.calls += 1
        w = np.asarray(weights, dtype=np.float64)
        if int(round_no) != self.after or w.shape != self.direction.shape:
            return weights
        self.marked.append(int(round_no))
        self.base = self._latest_received()
        return w + self.size * self.direction

    def judge(self, final: np.ndarray | None, last: np.ndarray | None) -> dict[str, Any]:
        """How many times the final model carries the mark, against the model the marked update was trained from
        (``last``, the last model the party received in the rounds it took part in, when the tap had none then; a
        platform may also send the party the aggregate of its last round, e.g. Flower's evaluate message, which
        already carries the mark once)."""
        last = self.base if self.base is not None else last
        limit = value("dropout_mark_repeat_max")
        record: dict[str, Any] = {"check": "dropout mark", "size": self.size, "eigenvalue": self.eigenvalue,
                                  "direction": self.direction.tolist(), "share": self.share, "limit": limit}
        if not self.marked:
            # the caller fails this when the party sent any update (REV16-3): its round-`after` update is the one
            # the job's dropout notice says it sends last, so a job without one did not run as specified
            return {**record, "status": "not checked", "unmarked": True,
                    "why": f"the verifier's party sent no model-sized update in round {self.after} (the TaskSpec's "
                           f"dropout round, its last before leaving; update hook calls: {self.calls}), so its last "
                           "update carried no mark"}
        if final is None or last is None or final.shape != self.direction.shape:
            return {**record, "status": "not checked",
                    "why": "no exported model over the drawn columns, or no model the party received"}
        carried = float((final - last) @ self.direction) / self.size
        record["carried"] = carried
        if carried > limit * self.share:
            return {**record, "status": "repeated",
                    "why": f"the final model carries {carried:.2f} of the mark the verifier's party put on its last "
                           f"update, more than {limit:g} x its share {self.share:.2f} (an honest mean carries about "
                           "its share, once): that update counted again after the party left (a re-filed stale "
                           "update; server momentum would also do this, and is not the \"mean\" the job asks for)"}
        return {**record, "status": "once"}
