"""A run's privacy spending at a party, bounded by what the party reserved when it approved the job.

Why: the party's approval reserved (epsilon, delta) of the dataset's lifetime budget
(`sampan.privacy.owner_budget`). Within the run the party keeps composing its releases with the run's
own accountant (RDP or PLD: tighter than adding epsilons), in a per-run ledger whose budget IS the
reservation, persisted under <state_dir>/consent/runs/<sha256 of the job id>.ledger.json with the job id
inside (a restarted agent carries on from it; a ledger of another job, or one behind the spend the book
recorded, is refused: review R14-CONSENT2-5). Before a release leaves, `JobReservation.admit` checks the
run ledger, then the book with the run's would-be total (write-ahead), and records the step only once both
accepted: the step that would pass the reservation is refused, nothing released, nothing charged (then or
later: review R14-CONSENT2-7), and the refusal written to the party's audit log. One JobReservation per
open job at a party (`ConsentDesk` shares it between re-openings), so a job's ledger is never forked. A
crash between the book's charge and the ledger's write leaves the book ahead: that run is then not resumed
(fail closed; `sampan consent settle` closes it, its recorded spend stays).
A job approved as exact (no DP) reserved nothing, so any DP
release it attempts is refused; an open-ended job (DP without a stated epsilon) is bounded by the
dataset's remaining lifetime budget instead. The book is charged the run ledger's delta as soon as the run made
an approximate-DP (Gaussian) release, open-ended or not: never 0 then (review R14-CONSENT-3).

The policy builders (`horizontal_policy`, `vertical_policy`) moved here from the party agent: they build
the party's `PartyPrivacyPolicy` from party.toml and the accepted job, as a `ReservedPolicy` when the run
has a reservation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sampan.deploy.allow import privacy_policy
from sampan.files import atomic_write_bytes, private_directory
from sampan.privacy.ledger import Budget, BudgetExceeded, Ledger, PrivacyEvent
from sampan.privacy.owner_budget import BudgetRefused, OwnerBudgetBook
from sampan.privacy.party_policy import DEFAULT_MIN_NOISE_MULTIPLIER, PartyPrivacyPolicy, PolicyRefused

__all__ = ["JobReservation", "ReservedPolicy", "horizontal_policy", "vertical_policy"]

_UNBOUNDED = 1e9
_TINY = 1e-12  # a reservation of 0 as a ledger budget (which must be > 0): any DP release passes it


class JobReservation:
    """One run's share of the book: its ledger (budget = the reservation) and the book to charge."""

    def __init__(self, book: OwnerBudgetBook, job_id: str, party: str, *, accountant: str, state_dir: Path,
                 on_refuse: Callable[[str], None] | None = None) -> None:
        entry = book.entry(job_id)
        if entry is None:
            raise BudgetRefused(f"party {party!r}: job {job_id!r} has no reservation in its budget book")
        self.book, self.job_id, self.party, self.entry = book, job_id, party, entry
        self._on_refuse = on_refuse
        self._lock = threading.Lock()
        # one file per job id, named by its sha256 (job ids are the coordinator's: review R14-CONSENT2-5)
        self.path = state_dir / "consent" / "runs" / f"{hashlib.sha256(job_id.encode()).hexdigest()}.ledger.json"
        if self.path.exists():
            stored = json.loads(self.path.read_text())
            if not isinstance(stored, dict) or stored.get("job_id") != job_id:
                raise BudgetRefused(f"party {party!r}: the run ledger {self.path.name} is not job {job_id!r}'s")
            self.ledger = Ledger.from_json(str(stored["ledger"]))
            if self.ledger.spent(party) < entry.spent_epsilon - 1e-9:  # never below what the book recorded
                raise BudgetRefused(f"party {party!r}: job {job_id!r}'s run ledger ({self.ledger.spent(party):g}) "
                                    f"is behind its recorded spend ({entry.spent_epsilon:g}); not resumed")
        else:
            eps = _UNBOUNDED if entry.open_ended else max(entry.reserved_epsilon, _TINY)
            delta = entry.reserved_delta if entry.reserved_delta > 0 else 1e-5
            self.ledger = Ledger({party: Budget(eps, delta)}, accountant="pld" if accountant == "pld" else "rdp")

    def admit(self, events: Sequence[PrivacyEvent]) -> None:
        """Check and record `events` against the reservation, charge the book; PolicyRefused if over."""
        if not events:
            return
        with self._lock:
            try:
                self.ledger.check([dataclasses.replace(e, party=self.party) for e in events])
            except BudgetExceeded as exc:
                self._refuse(f"party {self.party!r} refuses: the step would exceed the job's reservation of "
                             f"epsilon {self.entry.reserved_epsilon:g} ({exc})")
            # the would-be ledger is checked against the book first; only an accepted step is recorded (a step
            # the book refuses is never charged later: review R14-CONSENT2-7)
            trial = Ledger.from_json(self.ledger.to_json())
            for event in events:
                trial.record(dataclasses.replace(event, party=self.party))
            spent = trial.spent(self.party)
            # the run's epsilon holds at the ledger's delta once any release is approximate-DP (Gaussian): the
            # book is charged that delta, open-ended or not (review R14-CONSENT-3); pure-epsilon runs spend none
            approximate = any(not e.pure for e in trial.events if e.party == self.party)
            delta = trial.budget(self.party).delta if approximate else 0.0
            try:
                self.book.admit(self.job_id, spent, delta)
            except BudgetRefused as exc:
                self._refuse(f"party {self.party!r} refuses: {exc}")
            self.ledger = trial  # a crash before this write leaves the book ahead: the run is then not resumed
            private_directory(self.path.parent.parent)
            private_directory(self.path.parent)
            atomic_write_bytes(self.path, json.dumps({"job_id": self.job_id, "ledger": trial.to_json()}).encode(),
                               mode=0o600)

    def _refuse(self, reason: str) -> None:
        if self._on_refuse is not None:
            self._on_refuse(reason)
        raise PolicyRefused(reason)


@dataclasses.dataclass
class ReservedPolicy(PartyPrivacyPolicy):
    """A party policy whose every charge is first admitted against the run's reservation."""

    reservation: JobReservation | None = None

    def _charge(self, party: str, events: list[PrivacyEvent]) -> None:
        if events and self.reservation is not None:
            try:  # the party's own [privacy] budget first: a step it refuses charges the book nothing (R14-CONSENT2-7)
                self.ledger(party).check(events)
            except BudgetExceeded as exc:
                raise PolicyRefused(f"party {party!r} refuses: its own budget would be exceeded ({exc})") from None
            self.reservation.admit(events)
        super()._charge(party, events)


def _reserved(policy: PartyPrivacyPolicy, reservation: JobReservation | None) -> PartyPrivacyPolicy:
    if reservation is None:
        return policy
    fields = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.init}
    return ReservedPolicy(**fields, reservation=reservation)


def horizontal_policy(config: Any, job: dict[str, Any], ledgers: dict[str, Any],
                      reservation: JobReservation | None = None) -> PartyPrivacyPolicy:
    """The privacy policy of one horizontal run, from party.toml: the `[allow]` noise floor and required DP,
    the `[privacy]` budget and trust, one ledger for all its runs persisted in <state_dir> (written before
    each release, reloaded after a restart); bounded by the run's reservation."""
    allow, own = config.allow, config.privacy
    need = set(allow.require) if allow is not None else set()
    levels = {level.upper() for level in need & {"dp1", "dp2", "dp3"}} | ({"DP"} if "dp" in need else set())
    # a job announced with DP is a DP run from its first message (review R8-3): the levels it announced are
    # required of every request, so describe/stats/evaluate are under DP before any DP request arrived
    levels |= {level.upper() for level in set(job.get("protections") or ()) & {"dp1", "dp2", "dp3"}}
    floor = allow.min_noise_multiplier if allow is not None and allow.min_noise_multiplier else None
    policy = PartyPrivacyPolicy(
        min_noise_multiplier=floor or DEFAULT_MIN_NOISE_MULTIPLIER, epsilon=own.epsilon, delta=own.delta,
        required_levels=frozenset(levels), ledger_path=Path(config.party.state_dir) / "privacy-ledger.json",
        # DP3 shares assume at most the job's party count: a larger `parties` would thin this party's noise
        max_parties=len(job["parties"]),
        trust_coordinator_for_central_dp3=own.trust_coordinator_for_central_dp3,
    )
    return _reserved(policy, reservation).sharing_ledgers(ledgers)


def vertical_policy(config: Any, job: dict[str, Any] | None, ledgers: dict[str, Any],
                    reservation: JobReservation | None = None) -> PartyPrivacyPolicy:
    """The policy of one vertical run: the `[allow]` floor and required DP on histograms (also those the job
    announced, review R12-VER-1), charged to the same persisted ledger and budget as its horizontal runs
    (review R8-5: it used to be an in-memory ledger); bounded by the run's reservation."""
    own = config.privacy
    policy = privacy_policy(config.allow, job, epsilon=own.epsilon, delta=own.delta,
                            ledger_path=Path(config.party.state_dir) / "privacy-ledger.json")
    return _reserved(policy, reservation).sharing_ledgers(ledgers)
