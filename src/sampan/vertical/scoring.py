"""Joint scoring of a loan application (or of held-out rows) with a trained vertical linear model.

Flow (three waves, all party-to-party payloads sealed so the coordinator sees only sizes):

1. ``score.start`` — the bank looks up the applicant in its own table, computes its partial logit and
   per-feature contributions, and seals the registration numbers to each partner. The ids come in the
   request, or (``applicants_file``, `read_applicant_ids`) from a CSV on the bank's own machine that the
   job names: then the coordinator holds only the path, never an id (a deployed bank reads only the file
   and column of the job it accepted).
2. ``score.partial`` — each partner computes its partial logit for each applicant it knows; an
   applicant it does not know gets the neutral value 0 (the partner's standardised training mean)
   and a ``missing`` flag. With two or more partners each adds a pairwise zero-sum mask in Z_2^64
   (from the pairwise channel PRG) so the bank learns only the *sum* of partner contributions.
3. ``score.finish`` — the bank adds everything, and keeps the probability of default, the score and
   the reason codes to itself; the coordinator receives an acknowledgement only (or, for held-out
   evaluation, aggregate metrics).

An applicant the bank does not hold is scored like one it holds, with the bank's part neutral (as a
partner treats an id it does not know), and flagged ``unknown_at_bank`` in the bank's own result: the
coordinator's view is identical either way, so it cannot test bank membership of ids it chooses.

What each role learns: the bank learns the applicant's final PD, the summed partner contribution and,
per partner, whether that partner knows the applicant (the result must say so). Each partner learns
the registration number the bank asked about, as with any credit-reference query, and nothing else.
The coordinator learns that a query happened, how many applicants it carried and the sizes of the
sealed envelopes, never who applied or any score. Held-out evaluation returns aggregate metrics (AUC,
KS, Brier, default rate, mean PD, missing rates, and per fixed PD band, merged to at least 10 rows, the defaults,
non-defaults and summed PD for the ROC and calibration curves: `sampan.metrics.score_bands`) over the run's test
rows only (the bank's own, announced in `vertical.splits`), each model
once (`sampan.vertical.rows`: the bank checks the rows itself; metric errors stay in its local log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.crypto.channel import SealedChannels
from sampan.crypto.ring import decode, encode
from sampan.metrics import brier_score, ks_statistic, roc_auc
from sampan.metrics.score_bands import score_bands
from sampan.models.explain import ScoreCard
from sampan.models.scorecard import psi
from sampan.vertical.applicants import ApplicantsPolicy, applicant_ids, pack_ids, read_applicant_ids, unpack_ids
from sampan.vertical.model import LocalLinearPart
from sampan.vertical.rows import RunRows, fingerprint, per_run
from sampan.vertical.secure_lr import receive
from sampan.wire import Message

__all__ = ["ScoreCard", "ScoreResult", "ScoringParty", "score_points", "read_applicant_ids", "REVEALS"]

REVEALS = (
    "Joint scoring: the bank learns the applicant's probability of default, the summed partner "
    "contribution and which partners know the applicant; each partner learns only the registration "
    "number queried; the coordinator learns neither (ids and partial scores travel sealed)."
)
_BITS = 16


def score_points(pd: np.ndarray, card: ScoreCard = ScoreCard()) -> np.ndarray:
    return card.points(pd)


@dataclass
class ScoreResult:
    """What the bank sees for one applicant."""

    applicant: str
    probability_of_default: float
    score: float
    logit: float
    bank_contribution: float
    partner_contribution: float
    missing_at: list[str]
    reasons: list[dict[str, Any]]
    seconds: float = 0.0
    unknown_at_bank: bool = False  # the bank holds no record of the applicant (its part was neutral)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Pending:
    request_id: str
    applicants: list[str]
    rows: np.ndarray | None
    z_bank: np.ndarray
    contributions: np.ndarray | None
    started: float
    tag: np.ndarray  # the request's random tag, sealed in the query: a partner's answer must carry it back


@dataclass
class ScoringParty:
    """Party-side scoring handlers over this party's own full table (not just the aligned rows)."""

    name: str
    ids: np.ndarray
    X: np.ndarray
    part: Callable[[], LocalLinearPart]
    channels: Callable[[], SealedChannels]
    aligned_rows: Callable[[], np.ndarray | None]
    y: np.ndarray | None = None
    run_rows: Callable[[str], RunRows] | None = None  # the run's row rules, shared with the party's other protocols
    card: ScoreCard = field(default_factory=ScoreCard)
    applicants: ApplicantsPolicy | None = None  # the bank's applicants files (`sampan.vertical.applicants`)
    results: dict[str, list[ScoreResult]] = field(default_factory=dict)
    evaluated: dict[str, np.ndarray] = field(default_factory=dict)  # bank: PDs of evaluated batches, kept here
    _index: dict[str, int] | None = None
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _inbox: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.run_rows is None:
            self.run_rows = per_run(self.name)

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"score.start": self.start, "score.partial": self.partial, "score.finish": self.finish}

    def _rows_for(self, applicants: list[str]) -> np.ndarray:
        if self._index is None:
            self._index = {str(i).strip(): r for r, i in enumerate(self.ids)}
        return np.array([self._index.get(a.strip(), -1) for a in applicants], dtype=np.int64)

    # --- bank -------------------------------------------------------------------------------------
    def start(self, msg: Message) -> Message:
        """Bank: own partial logits; seal the query (ids, or aligned held-out rows) to every partner."""
        started = time.perf_counter()
        part = self.part()
        partners = check_partners(self.name, list(msg.meta["partners"]), part.meta, self.channels())
        request_id = str(msg.meta["request_id"])
        if "aligned" in msg.arrays:
            aligned = self.aligned_rows()
            if aligned is None:
                raise ValueError(f"party {self.name!r}: no aligned rows; run PSI alignment first")
            assert self.run_rows is not None
            model = "lr:" + fingerprint(*part.to_arrays())
            positions = self.run_rows(msg.run_id).admit_evaluation(model, msg.arrays["aligned"], len(aligned),
                                                              lambda: None if self.y is None else self.y[aligned])
            rows, applicants, query = aligned[positions], [], {"aligned": positions}
        else:
            applicants = applicant_ids(self.name, self.applicants, msg.meta)
            rows = self._rows_for(applicants)
            # review R12-VER-8: an applicant the bank does not hold is answered like one it holds (its own part
            # neutral, as a partner treats an unknown id), so the coordinator cannot read bank membership from
            # the reply; only the bank's result records it (`unknown_at_bank`)
            unknown = [k + 1 for k, r in enumerate(rows) if r < 0]
            if unknown:
                logging.getLogger(__name__).warning("party %s: applicants at positions %s of %d are not in its table; "
                                                    "scored with its part neutral (local log only)", self.name,
                                                    unknown[:20], len(rows))
            query = {"ids": pack_ids(self.name, applicants)}  # padded: sizes say nothing of the ids
        known = rows >= 0
        X = self.X[np.where(known, rows, 0)] if len(self.X) else self.X[rows]
        z_bank = part.partial_logit(X)
        contributions = None if "aligned" in msg.arrays else part.scaler.transform(part.features(X)) * part.weights
        if not known.all():  # neutral: the standardised training mean (contributions 0), the intercept only
            z_bank = np.where(known, z_bank, np.clip(part.intercept, -part.logit_clip, part.logit_clip))
            if contributions is not None:
                contributions[~known] = 0.0
        tag = request_tag()
        self._pending[request_id] = _Pending(request_id, applicants, rows, z_bank, contributions, started, tag)
        ch = self.channels()
        out = {f"to:{p}": ch.seal_arrays(p, {**query, "request": tag}) for p in partners}
        return msg.reply("score.started", out)

    def finish(self, msg: Message) -> Message:
        """Bank: add the (masked) partner sum; results stay here. Held-out mode returns metrics only."""
        receive(msg, self.channels(), self._inbox)
        request_id = str(msg.meta["request_id"])
        pending = self._pending.pop(request_id)
        partners = check_partners(self.name, list(msg.meta["partners"]), self.part().meta, self.channels())
        answers = {p: [self._inbox.pop((p, k), None) for k in ("z", "missing", "request")] for p in partners}
        total = np.zeros(len(pending.z_bank), dtype=np.uint64)
        missing: dict[str, np.ndarray] = {}
        for p, (z, flags, tag) in answers.items():
            check_tag(self.name, p, tag, pending.tag)
            if z is None or flags is None or len(z) != len(total):
                raise ValueError(f"party {self.name!r}: partner {p!r}'s answer to request {request_id!r} is missing "
                                 "or of another size")
            total = total + z
            missing[p] = flags.astype(bool)
        partner_z = decode(total, _BITS)
        logit = pending.z_bank + partner_z
        pd = 1.0 / (1.0 + np.exp(-logit))
        if not pending.applicants:  # held-out evaluation: only aggregate metrics leave the bank
            if self.y is None:
                raise ValueError(f"party {self.name!r} has no labels to evaluate with")
            y = self.y[pending.rows]
            try:
                metrics = {"n": int(len(y)), "auc": roc_auc(y, pd), "ks": ks_statistic(y, pd),
                           "brier": brier_score(y, pd), "default_rate": float(y.mean()), "mean_pd": float(pd.mean()),
                           "missing_rate": {p: float(m.mean()) for p, m in missing.items()},
                           "curves": score_bands(y, pd)}  # ROC and calibration from fixed PD bands
            except Exception as exc:  # its text may name a class: it stays in the bank's local log
                logging.getLogger(__name__).warning("party %s: held-out metrics failed: %s (local log only)",
                                                    self.name, exc)
                raise ValueError(f"party {self.name!r}: the held-out metrics could not be computed (details in "
                                 "this party's local log)") from None
            reference = msg.meta.get("stability_reference")
            if reference is not None and str(reference) in self.evaluated:
                # Population stability of this batch's scores against an earlier batch's (bank-local).
                metrics["psi"] = psi(self.card.points(self.evaluated[str(reference)]), self.card.points(pd))
            self.evaluated[request_id] = pd
            return msg.reply("score.metrics", meta=metrics)
        part = self.part()
        points = self.card.points(pd)
        seconds = time.perf_counter() - pending.started
        results = []
        for i, applicant in enumerate(pending.applicants):
            assert pending.contributions is not None
            results.append(ScoreResult(
                applicant=applicant, probability_of_default=float(pd[i]), score=float(points[i]),
                logit=float(logit[i]), bank_contribution=float(pending.z_bank[i]),
                partner_contribution=float(partner_z[i]),
                missing_at=[p for p in partners if missing[p][i]],
                reasons=reason_codes(part.feature_names, pending.contributions[i], float(partner_z[i])),
                seconds=seconds, unknown_at_bank=bool(pending.rows is not None and pending.rows[i] < 0)))
        self.results[request_id] = results
        return msg.reply("score.done", meta={"n": len(results)})

    # --- partners ---------------------------------------------------------------------------------
    def partial(self, msg: Message) -> Message:
        """Partner: partial logits (0 and a flag where the applicant is unknown), masked, sealed to the bank."""
        receive(msg, self.channels(), self._inbox)
        bank = self.channels().require_role(str(msg.meta["bank"]), "label_holder", "scoring")
        partners = check_partners(self.name, list(msg.meta["partners"]), self.part().meta, self.channels())
        request_id = str(msg.meta["request_id"])
        tag = self._inbox.pop((bank, "request"), None)
        if tag is None:
            for name in ("aligned", "ids"):
                self._inbox.pop((bank, name), None)
            raise ValueError(f"party {self.name!r}: the bank's query for request {request_id!r} carries no request "
                             "tag (it cannot be bound to its answer)")
        if (bank, "aligned") in self._inbox:
            aligned = self.aligned_rows()
            if aligned is None:
                raise ValueError(f"party {self.name!r}: no aligned rows; run PSI alignment first")
            rows = aligned[self._inbox.pop((bank, "aligned"))]
        else:
            rows = self._rows_for(unpack_ids(self._inbox.pop((bank, "ids"))))
        known = rows >= 0
        z = np.zeros(len(rows))
        if known.any():
            z[known] = self.part().partial_logit(self.X[rows[known]])
        share = encode(z, _BITS)
        ch = self.channels()
        for other in partners:
            if other != self.name:
                pad = ch.prg(other, f"score/{request_id}", len(rows))
                share = share + pad if self.name < other else share - pad
        envelope = ch.seal_arrays(bank, {"z": share, "missing": (~known).astype(np.uint8), "request": tag})
        return msg.reply("score.partial", {f"to:{bank}": envelope})


def request_tag() -> np.ndarray:
    """A fresh random tag for one scoring request (review R13-SCO-16): sealed to every partner in the query and
    sealed back in each answer, so an answer relayed into another request (a replay) is refused."""
    import os

    return np.frombuffer(os.urandom(16), dtype=np.uint8).copy()


def check_tag(party: str, partner: str, tag: np.ndarray | None, expected: np.ndarray) -> None:
    """The bank refuses a partner answer that does not carry this request's tag (another request's answer)."""
    if tag is None or not np.array_equal(np.asarray(tag, dtype=np.uint8), expected):
        raise ValueError(f"party {party!r}: partner {partner!r}'s sealed answer belongs to no query of this request "
                         "(replayed from another request?): refused")


def model_partners(party: str, part_meta: Mapping[str, Any], channels: SealedChannels) -> list[str]:
    """The partners of the model being scored: the parties its part was trained with (its recorded run parties)
    but the bank; a part with no such record (built in memory): every party of this run's signed keys but the bank."""
    roles = dict(channels.roles)
    holder = part_meta.get("label_holder") or next((n for n, r in roles.items() if r == "label_holder"), None)
    parties = part_meta.get("run_parties") or list(roles) or [party, *channels.peers]
    return sorted(str(p) for p in parties if p != holder)


def check_partners(party: str, named: list[str], part_meta: Mapping[str, Any], channels: SealedChannels) -> list[str]:
    """The partners a request names must be exactly the model's (review R13-SCO-17/18): the bank never scores
    with a partner left out, and a partner masks toward every other partner of the model (never hands the bank its
    own partial logit because the coordinator listed it alone)."""
    expected = model_partners(party, part_meta, channels)
    if sorted(set(named)) != expected or len(named) != len(expected):
        raise ValueError(f"party {party!r} refuses the scoring request: it names partners {sorted(named)}, the "
                         f"model's partners are {expected}")
    return named


def reason_codes(feature_names: list[str], contributions: np.ndarray, partner: float,
                 top: int = 4) -> list[dict[str, Any]]:
    """The bank's features that raise this applicant's risk most, then the partners' summed effect.

    Contributions are on the logit scale (w_k * standardised x_k): positive raises the PD. When nothing raises
    it and the partners' sum is 0 (e.g. no partner knows the applicant), the bank's least favourable features
    are listed instead, so the reasons are never all zero.
    """
    order = np.argsort(-contributions)
    adverse = [int(k) for k in order[:top] if contributions[k] > 0]
    if not adverse and partner == 0.0:  # never all zero: the least favourable of the bank's own features instead
        adverse = [int(k) for k in order if contributions[k] != 0][:top]
    reasons: list[dict[str, Any]] = [
        {"source": "bank", "feature": feature_names[k], "logit_contribution": float(contributions[k])} for k in adverse]
    reasons.append({"source": "partners (aggregated)", "feature": "partner data",
                    "logit_contribution": float(partner)})
    reasons.sort(key=lambda r: -r["logit_contribution"])
    return reasons
