"""A data owner's own privacy policy: a minimum noise it accepts and its own ledger and budget.

Why: the coordinator chooses the noise and keeps the run's ledger, so a malicious or buggy coordinator
could ask for noise multiplier 0 (or skip a charge after a crash) and every party would comply. Each
party therefore checks every DP request against its own policy *before* it trains or releases
anything, and charges its own ledger write-ahead (persisted first when the ledger has a file), so a
coordinator restarting a round gets a fresh, charged release or a refusal, never a free one.

Checks (a refusal is a `PolicyRefused` naming the party and the field; the transport carries it to the
coordinator as that party's error):
- a requested level (DP1, DP2, DP3) must carry a finite noise multiplier >= `min_noise_multiplier`
  (0, negative or missing noise is always refused); DP3's is the record-level multiplier computed
  from the settings themselves (`sampan.privacy.dp3.settings_noise_multiplier`), not the label the
  coordinator attached;
- a level in `required_levels` must be present (a coordinator cannot switch DP off by omitting it);
  any required level (also "DP": any DP, no level in particular) makes `describe` without `dp_count`
  and `stats` without `dp1` refused (`requires_dp`); "DP" also makes `fit` without dp2 or dp3 refused
  (DP1 alone protects only the statistics: the update would leave exactly);
- DP-SGD needs a released row count (`public_rows`): its rate and steps never depend on the exact n;
- every `fit`'s training settings must be well-formed, finite and within `checked_train_config`'s bounds
  (learning rate, epochs, steps): refused from the request alone, before any row is touched (review
  R12-HOR-5: at a learning rate of 1e308 whether the exact update overflows is a function of the rows);
- DP3: distributed mode needs secure aggregation in the request (the party adds only 1/√m of the noise;
  its SecAgg client refuses m above the m_min it shared with and unmasks only after m signers); central
  mode needs `trust_coordinator_for_central_dp3` (True by default for the in-process simulation, whose
  coordinator is the same process; deployed agents read it from party.toml, default false);
- with a budget, a request whose events would take the party past it is refused (nothing released).

Residual trust (distributed DP3 under secure aggregation): each party adds σ²/m_min of the noise and
relies on at least m_min contributions being in the sum; it refuses m_min above the round's stated
party count (and a deployed party above its job's), and its SecAgg client helps unmask only after
m_min certified parties signed the survivor set.

Vertical protocols (`admit_histograms`): a party's noised histogram release in federated WOE or
vertical GBDT (a partner's per-bin sums, the bank's label noise) is checked at its noise multiplier
sigma / sensitivity against the same minimum, refused without noise when `required_levels` names the
protocol ("WOE", "GBDT"), refused when its (protocol, instance, release) was already answered (the
instance is a nonce the party drew itself, so a coordinator cannot replay one instance for fresh
noise), and charged to the same ledger as a Gaussian release at level DP1 (statistics) before the reply
leaves. An exact (un-noised) release is not charged: the receipt declares it exact, with no DP claim.

What the party's ledger counts: every release it made under DP, at the multiplier it was asked for,
with its own row count and training settings (DP-SGD steps and sampling rate as `planned_steps`
computes them). It does not count what a coordinator may add on its side (central DP3 noise): the
party can only hold the coordinator to the settings it was sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.errors import PartyError
from sampan.files import atomic_write_bytes
from sampan.models.local_training import checked_train_config
from sampan.privacy.dp3 import settings_noise_multiplier
from sampan.privacy.dpsgd import DPSGDConfig, planned_steps
from sampan.privacy.ledger import AccountantKind, Budget, BudgetExceeded, Ledger, PrivacyEvent

DEFAULT_MIN_NOISE_MULTIPLIER = 0.5
# A ledger without a budget still accounts; it is bounded by this (never reached in practice).
_UNBOUNDED_EPSILON = 1e9


class PolicyRefused(PartyError, ValueError):
    """A party refuses a request that breaks its privacy policy; the message names party and field."""


@dataclass
class PartyPrivacyPolicy:
    """What one data owner accepts. `epsilon=None`: account without a budget of its own."""

    min_noise_multiplier: float = DEFAULT_MIN_NOISE_MULTIPLIER
    epsilon: float | None = None
    delta: float = 1e-5
    accountant: AccountantKind = "rdp"
    required_levels: frozenset[str] = frozenset()
    ledger_path: Path | None = None  # persisted (0600) before each release when set
    # the parties of the job it accepted: DP3 `parties`/`noise_parties` above are refused
    max_parties: int | None = None
    # central DP3: the coordinator adds all the noise and sees each clipped update in clear. True in the in-process
    # simulation (the coordinator is the same process as every party); deployed agents take it from party.toml
    # (`[privacy] trust_coordinator_for_central_dp3`, default false), so a deployed party refuses central DP3
    trust_coordinator_for_central_dp3: bool = True
    _ledgers: dict[str, Ledger] = field(default_factory=dict, repr=False)
    _answered: set[str] = field(default_factory=set, repr=False)  # vertical releases already answered

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_noise_multiplier) and self.min_noise_multiplier > 0):
            raise ValueError(f"party privacy policy: min_noise_multiplier must be > 0, got {self.min_noise_multiplier}")

    # --- the ledger ------------------------------------------------------------------------------
    def sharing_ledgers(self, ledgers: dict[str, Ledger]) -> PartyPrivacyPolicy:
        """Use `ledgers` (one dict per data owner) as this policy's ledgers: a party agent's concurrent runs,
        each with its own policy, then charge one ledger (and one persisted file), never stale copies of it."""
        self._ledgers = ledgers
        return self

    def ledger(self, party: str) -> Ledger:
        """The party's own ledger (loaded from `ledger_path` when it exists)."""
        if party not in self._ledgers:
            if self.ledger_path is not None and Path(self.ledger_path).exists():
                self._ledgers[party] = Ledger.from_json(Path(self.ledger_path).read_text())
            else:
                budget = Budget(self.epsilon if self.epsilon is not None else _UNBOUNDED_EPSILON, self.delta)
                self._ledgers[party] = Ledger({party: budget}, accountant=self.accountant)
        return self._ledgers[party]

    def _persist(self, ledger: Ledger) -> None:
        if self.ledger_path is None:
            return
        # a unique temporary file per write (two runs may charge at once), fsynced, then renamed over
        atomic_write_bytes(Path(self.ledger_path), ledger.to_json().encode(), mode=0o600)

    # --- checks ----------------------------------------------------------------------------------
    def _noise(self, party: str, field_name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise PolicyRefused(f"party {party!r} refuses {field_name}={value!r}: a DP request needs a finite "
                                f"noise multiplier >= {self.min_noise_multiplier:g}")
        if float(value) < self.min_noise_multiplier * (1 - 1e-9):  # float slack only
            raise PolicyRefused(f"party {party!r} refuses {field_name}={float(value):.4g}: below its minimum noise "
                                f"multiplier {self.min_noise_multiplier:g}")
        return float(value)

    def _required(self, party: str, kind: str, meta: Mapping[str, Any], levels: tuple[str, ...]) -> None:
        for level in sorted(self.required_levels):
            if level in levels and level.lower() not in meta:
                raise PolicyRefused(f"party {party!r} refuses {kind!r} without {level.lower()}: its policy "
                                    f"requires {level}")

    def _charge(self, party: str, events: list[PrivacyEvent]) -> None:
        """Refuse if over the party's own budget; else record and persist before anything is released."""
        if not events:
            return
        ledger = self.ledger(party)
        try:
            ledger.check(events)
        except BudgetExceeded as exc:
            raise PolicyRefused(f"party {party!r} refuses: its own budget would be exceeded ({exc})") from None
        for event in events:
            ledger.record(event)
        self._persist(ledger)

    def requires_dp(self) -> bool:
        """A policy that names any required level: nothing leaves the party exactly that a DP level could cover."""
        return bool(self.required_levels)

    def admit_describe(self, party: str, meta: Mapping[str, Any], *, dp_run: bool = False) -> None:
        """The row count released under DP (`dp_count`): check the noise, charge the party's ledger.

        Without `dp_count` the exact count and positive rate would leave: refused when the policy requires
        any DP level or the party already answered a DP request in this run (`dp_run`)."""
        if "dp_count" not in meta:
            if self.requires_dp() or dp_run:
                raise PolicyRefused(f"party {party!r} refuses 'describe' without dp_count: its policy requires DP "
                                    "(the exact row count and positive rate would leave uncharged)")
            return
        z = self._noise(party, "dp_count.noise_multiplier", (meta["dp_count"] or {}).get("noise_multiplier"))
        self._charge(party, [PrivacyEvent(party=party, level="DP1", mechanism="gaussian", noise_multiplier=z,
                                          note="party-side: training row count")])

    def admit_stats(self, party: str, meta: Mapping[str, Any], *, dp_run: bool = False) -> None:
        """DP1 statistics: check the noise, charge the party's ledger (exact sums refused under a DP policy)."""
        self._required(party, "stats", meta, ("DP1",))
        if "dp1" not in meta:
            if self.requires_dp() or dp_run:
                raise PolicyRefused(f"party {party!r} refuses 'stats' without dp1: its policy requires DP (exact "
                                    "feature sums would leave uncharged)")
            return
        z = self._noise(party, "dp1.noise_multiplier", (meta["dp1"] or {}).get("noise_multiplier"))
        self._charge(party, [PrivacyEvent(party=party, level="DP1", mechanism="gaussian", noise_multiplier=z,
                                          note="party-side: preprocessing statistics")])

    def admit_fit(self, party: str, meta: Mapping[str, Any], rows: int, *, step: int | None = None,
                  attempt: str = "") -> None:
        """DP2/DP3 training request: check each level's noise and charge the party's ledger.

        `step` (the round) and `attempt` (e.g. the SecAgg label) key each charge: every release is its own event."""
        self._required(party, "fit", meta, ("DP2", "DP3"))
        try:  # review R12-HOR-5: malformed, non-finite or absurd settings refused from the request alone
            train = checked_train_config(meta.get("train") or {})
        except ValueError as exc:
            raise PolicyRefused(f"party {party!r} refuses 'fit' training settings: {exc}") from None
        if "DP" in self.required_levels and "dp2" not in meta and "dp3" not in meta:  # review R8-4
            raise PolicyRefused(f"party {party!r} refuses 'fit' without dp2 or dp3: its policy requires DP, and an "
                                "update trained without DP-SGD or DP3 would leave exactly, uncharged")
        events: list[PrivacyEvent] = []
        if step is None:
            step = meta.get("round") if isinstance(meta.get("round"), int) else None
        where = f" [round {step}{', ' + attempt if attempt else ''}]" if step is not None else ""
        if "dp2" in meta:
            settings = dict(meta["dp2"] or {})
            z = self._noise(party, "dp2.noise_multiplier", settings.get("noise_multiplier"))
            if meta.get("public_rows") is None:  # q = batch / n and the steps would be functions of the exact n
                raise PolicyRefused(f"party {party!r} refuses dp2 without a released row count (public_rows): its "
                                    "sampling rate and steps would depend on its exact row count")
            try:
                dp = DPSGDConfig(**{**settings, "public_rows": meta.get("public_rows")})
                steps, q = planned_steps(rows, train, dp)
            except (TypeError, ValueError) as exc:
                raise PolicyRefused(f"party {party!r} refuses dp2 settings {settings}: {exc}") from None
            events.append(PrivacyEvent(party=party, level="DP2", mechanism="subsampled_gaussian", noise_multiplier=z,
                                       sampling_rate=q, count=max(int(steps), 1), step=step,
                                       note="party-side: DP-SGD local training" + where))
        if "dp3" in meta:
            settings = dict(meta["dp3"] or {})
            try:
                effective = settings_noise_multiplier(settings)
            except (KeyError, TypeError, ValueError) as exc:
                raise PolicyRefused(f"party {party!r} refuses dp3 settings without a usable clip and sum_sigma "
                                    f"({type(exc).__name__}: {exc})") from None
            z = self._noise(party, "dp3.sum_sigma (record-level noise multiplier)", effective)
            shares, parties = settings.get("noise_parties"), settings.get("parties")
            if self.max_parties is not None and isinstance(parties, int) and parties > self.max_parties:
                raise PolicyRefused(f"party {party!r} refuses dp3.parties={parties}: its job has only "
                                    f"{self.max_parties} parties (a larger count would thin its noise share)")
            if shares is not None and (not isinstance(parties, int) or not 1 <= int(shares) <= parties):
                raise PolicyRefused(f"party {party!r} refuses dp3.noise_parties={shares!r}: its noise share would "
                                    f"assume more contributors than the round's {parties!r} parties")
            self._dp3_mode(party, settings, meta.get("secagg"))
            events.append(PrivacyEvent(party=party, level="DP3", mechanism="gaussian", noise_multiplier=z, step=step,
                                       note="party-side: clipped update in a noised sum" + where))
        self._charge(party, events)

    def _dp3_mode(self, party: str, settings: Mapping[str, Any], secagg: Any) -> None:
        """Whether the noise the ledger charges is really in what leaves the party, given the DP3 mode.

        Central: all the noise is the coordinator's and the clipped update leaves in clear, so the party
        needs `trust_coordinator_for_central_dp3`. Distributed: the party adds only sum_sigma/√m (m =
        noise_parties or parties) and the charged z holds only for a sum of at least m such shares, so the
        request must carry secure aggregation (whose client then refuses m above the m_min it shared with,
        and unmasks only after m parties signed the survivor set); without it the coordinator would read
        the update with 1/√m of the noise, whatever `parties` claims."""
        mode = settings.get("mode", "central")
        if mode == "central":
            if not self.trust_coordinator_for_central_dp3:
                raise PolicyRefused(f"party {party!r} refuses dp3.mode='central': the coordinator would see its "
                                    "clipped update in clear and add all the noise itself, and this party's policy "
                                    "does not trust it to (trust_coordinator_for_central_dp3 = false)")
        elif mode == "distributed":
            if not isinstance(secagg, Mapping):
                raise PolicyRefused(f"party {party!r} refuses dp3.mode='distributed' without secure aggregation: its "
                                    "update would reach the coordinator with only its own 1/sqrt(m) share of the noise")
            m = settings.get("noise_parties") or settings.get("parties")
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise PolicyRefused(f"party {party!r} refuses dp3.noise_parties/parties={m!r}: not a party count")
        else:
            raise PolicyRefused(f"party {party!r} refuses dp3.mode={mode!r}: expected 'central' or 'distributed'")

    def admit_histograms(self, party: str, protocol: str, *, instance: str, release: str, sigma: float,
                         sensitivity2: float, count: int = 1, note: str | None = None) -> float | None:
        """A vertical histogram release (WOE counts, GBDT sums, WOE label noise): check, refuse replays, charge.

        `sigma` is the Gaussian noise the party adds itself (0: exact); `sensitivity2` the release's squared
        L2 sensitivity; `count` the number of such releases in this reply (0: check only, at setup, nothing
        charged or marked). Returns the noise multiplier (None for an exact release). Called before the
        reply is computed, so a refusal releases nothing and an accepted release is on the (persisted)
        ledger before it leaves.
        """
        key = f"{protocol}/{instance}/{release}"
        if not instance:
            raise PolicyRefused(f"party {party!r} refuses a {protocol} release without a protocol instance nonce")
        if count and key in self._answered:
            raise PolicyRefused(f"party {party!r} refuses {protocol} release {release!r}: already answered in this "
                                "protocol instance (a replay would give fresh noise on the same values)")
        if isinstance(sigma, (int, float)) and sigma < 0:
            raise PolicyRefused(f"party {party!r} refuses {protocol} noise sigma={sigma!r}: negative")
        if not sigma:
            if protocol.upper() in self.required_levels:
                raise PolicyRefused(f"party {party!r} refuses {protocol} without noise: its policy requires "
                                    f"DP on {protocol} releases")
            if count:
                self._answered.add(key)
            return None
        z = self._noise(party, f"{protocol} noise multiplier (sigma / sensitivity)", sigma / math.sqrt(sensitivity2))
        if not count:
            return z
        self._charge(party, [PrivacyEvent(party=party, level="DP1", mechanism="gaussian", noise_multiplier=z,
                                          count=max(int(count), 1),
                                          note=note or f"party-side: vertical {protocol} histogram")])
        self._answered.add(key)
        return z

    def account(self, party: str) -> dict[str, Any]:
        """This party's own run account: epsilon composed over every release it charged (all protocols)."""
        ledger = self.ledger(party)
        budget = ledger.budget(party)
        return {"epsilon_spent": ledger.spent(party), "delta": budget.delta,
                "budget": self.epsilon, "events": len([e for e in ledger.events if e.party == party]),
                "accountant": ledger.accountant}
