"""Coordinator-side privacy of a horizontal run: the ledger, DP1 settings, noise choice and schedule, DP3 wrapper.

Every privacy-relevant decision of the coordinator is here, so the workflow only asks three things:
what to send with a request, which ledger events a step will cause, and whether they fit. Events are
charged write-ahead: checked (a privacy filter: the run stops cleanly instead of overspending),
recorded and handed to `on_charge` (the workflow persists the ledger durably) *before* the request
that causes them is sent. A crash after that point therefore never makes a release free: the resumed
run starts from the durable ledger, and re-running the step is a fresh release, charged again; a crash
loop ends in a budget stop. The chosen noise travels in every checkpoint, so a resumed run keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sampan.config import RunConfig
from sampan.horizontal.dp1_scaler import auto_dp1_noise, dp1_bounds
from sampan.metrics.histogram import DEFAULT_BINS, DP_BINS
from sampan.models.local_training import TrainConfig
from sampan.privacy.calibration import calibrate_noise_multiplier, schedule_factor
from sampan.privacy.dp3 import (
    COUNT_NOISE_FACTOR,
    DP3Aggregation,
    DP3Config,
    party_level_from_record_level,
    settings_noise_multiplier,
)
from sampan.privacy.dpsgd import DPSGDConfig, planned_steps
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent
from sampan.privacy.wrappers import CentralDP3

LEVEL_SECTIONS = ("DP2", "DP3")
ChargeHook = Callable[[str, Sequence[PrivacyEvent]], None]  # (ledger JSON, events just charged)


class PrivacyControl:
    def __init__(self, config: RunConfig, train_config: Callable[[int], dict[str, Any]],
                 on_charge: ChargeHook | None = None) -> None:
        self.config = config
        self.on_charge = on_charge
        self.privacy = config.privacy
        self.train_config = train_config
        self.ledger: Ledger | None = None
        self.dp3: DP3Aggregation | None = None
        self.noise: dict[str, float] = {}
        # noise chosen at setup ("DP1:stats", "DP1:impute"): kept with the run's noise (checkpoint, receipt)
        self.setup_noise: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.privacy is not None

    # --- what the workflow asks instead of reading privacy flags ------------------------------------
    @property
    def evaluates_every_round(self) -> bool:
        """Under DP the model is evaluated once, at the end, on the released model (holdout rows are outside
        the DP unit; the receipt says so): no per-round evaluation release."""
        return self.privacy is None

    @property
    def releases_training_loss(self) -> bool:
        """Under DP no training loss leaves a party (it is no output of a charged mechanism)."""
        return self.privacy is None

    @property
    def evaluation_bins(self) -> int:
        """The bins parties evaluate into under secure aggregation: exactly `DP_BINS` under DP."""
        return DP_BINS if self.privacy is not None else DEFAULT_BINS

    def released_rows(self, party_rows: Mapping[str, int]) -> Mapping[str, int] | None:
        """The row counts requests may depend on: the released counts under DP, none otherwise."""
        return party_rows if self.privacy is not None else None

    def dp3_clip(self) -> float | None:
        return self.dp3.clip if self.dp3 is not None else None

    def aggregation(self, round_number: int, parties: Sequence[str], party_rows: Mapping[str, int]) -> Any:
        """The DP3 wrapper around this round's aggregation (`CentralDP3`), or None without DP3."""
        _, settings = self.fit_meta(round_number, parties, self.released_rows(party_rows))
        return CentralDP3(self.dp3, settings) if self.dp3 is not None and settings is not None else None

    def resume(self, durable_json: str | None, checkpoint_json: str | None, noise: Mapping[str, float],
               dp3_clip: float | None) -> None:
        """A resumed run: noise and clip from the checkpoint, the ledger from the write-ahead store (it has
        every charge, also those after the checkpoint). Nothing to do without `[privacy]`."""
        if self.privacy is None:
            return
        ledger_json = durable_json if durable_json is not None else checkpoint_json
        assert ledger_json is not None
        self.restore(ledger_json, noise, dp3_clip)

    # --- lifecycle ------------------------------------------------------------------------------
    def open(self, parties: Sequence[str], durable_json: str | None = None) -> None:
        """A new run: one budget per party; or, when setup is re-run after a crash, the durable ledger
        (whatever was charged before the crash stays charged)."""
        if self.privacy is None:
            return
        if durable_json is not None:
            self.ledger = Ledger.from_json(durable_json)
            return
        budget = Budget(self.privacy.epsilon, self.privacy.delta)
        self.ledger = Ledger({p: budget for p in parties}, accountant=self.privacy.accountant)

    def restore(self, ledger_json: str, noise: Mapping[str, float], dp3_clip: float | None) -> None:
        self.ledger = Ledger.from_json(ledger_json)
        self.noise = dict(noise)
        self._build_dp3(dp3_clip)

    def finish_setup(self, party_rows: Mapping[str, int], first_round: int) -> dict[str, float] | None:
        """Choose the noise for the rest of the run (after DP1 has been charged) and set up DP3; the chosen
        multipliers (None without `[privacy]`)."""
        if self.privacy is None:
            return None
        self.noise = {**self.setup_noise, **self._choose_noise(party_rows, first_round)}
        self._build_dp3(None)
        return dict(self.noise)

    def _build_dp3(self, clip: float | None) -> None:
        if self.privacy is None or self.privacy.dp3 is None:
            return
        settings = {k: v for k, v in self.privacy.dp3.model_dump().items() if k != "schedule"}
        section = self.privacy.dp3
        if section.adaptive and section.count_noise is not None:  # the count must leave room for the sum
            z_max = max(self.round_noise({"DP3": self.noise["DP3"]}, r)["DP3"]
                        for r in range(1, self.config.run.rounds + 1))
            if section.count_noise <= z_max:
                raise ValueError(
                    f"privacy.dp3.count_noise = {section.count_noise:g} must exceed the DP3 noise "
                    f"multiplier ({z_max:.3g}): the count alone would spend the round's budget"
                )
        self.dp3 = DP3Aggregation(DP3Config(**{**settings, "noise_multiplier": self.noise["DP3"]}), clip=clip)

    # --- DP1: the data owners' row counts and preprocessing statistics ----------------------------
    def count_request(self, parties: Sequence[str]) -> dict[str, Any] | None:
        """Settings sent with the `describe` request under DP, after charging each party's count release.

        Row counts feed the FedAvg weights, the DP-SGD sampling rate and steps, and the SecAgg weight;
        one Gaussian release (sensitivity 1 under add/remove-one-row) makes them public once, and
        everything downstream uses the released count."""
        if self.privacy is None:
            return None
        assert self.ledger is not None
        z = float(self.privacy.count_noise_multiplier)
        events = [
            PrivacyEvent(
                party=p, level="DP1", mechanism="gaussian", noise_multiplier=z, step=0, note="training row count"
            )
            for p in parties
        ]
        self.charge(events)
        return {"noise_multiplier": z}

    def dp1_request(self, feature_names: Sequence[str], parties: Sequence[str],
                    rows: Mapping[str, int] | None = None) -> dict[str, Any] | None:
        """Settings sent with the `stats` request, after charging each party's DP1 event; an `auto` noise is
        chosen from the budget share and the released row counts ``rows`` (`auto_dp1_noise`)."""
        section = self.privacy.dp1 if self.privacy else None
        if section is None:
            return None
        assert self.ledger is not None and self.privacy is not None
        z = section.noise_multiplier
        if z == "auto":
            z = auto_dp1_noise(self.privacy, len(feature_names), rows or {p: 1 for p in parties})
        self.setup_noise["DP1:stats"] = float(z)
        events = [
            PrivacyEvent(
                party=p,
                level="DP1",
                mechanism="gaussian",
                noise_multiplier=z,
                step=0,
                note="count, feature sums and sums of squares for standardisation",
            )
            for p in parties
        ]
        self.charge(events)
        return {"noise_multiplier": z, "bounds": dp1_bounds(section, feature_names)}

    # --- DP2 / DP3 -------------------------------------------------------------------------------
    def round_noise(self, noise: Mapping[str, float], round_number: int) -> dict[str, float]:
        """Base noise multipliers times this round's schedule factor (fixed before the run).

        Keys are a level ("DP2", "DP3") or a level and a party ("DP2:bank_a": that party's own DP-SGD
        noise, when calibrated per party)."""
        sections = {"DP2": self.privacy.dp2, "DP3": self.privacy.dp3} if self.privacy else {}
        return {
            key: z
            * schedule_factor(
                getattr(sections.get(key.split(":")[0]), "schedule", None), round_number, self.config.run.rounds
            )
            for key, z in noise.items()
        }

    @staticmethod
    def _dp2_noise(noise: Mapping[str, float], party: str) -> float:
        return noise.get(f"DP2:{party}", noise["DP2"])

    def planned_events(
        self,
        party_rows: Mapping[str, int],
        parties: Sequence[str],
        round_number: int,
        noise: Mapping[str, float] | None = None,
    ) -> list[PrivacyEvent]:
        """Every ledger event a training round will cause, known before any party trains."""
        if self.privacy is None:
            return []
        noise = self.round_noise(noise if noise is not None else self.noise, round_number)
        events = []
        if self.privacy.dp3 is not None:
            z3 = noise["DP3"]
            if self.dp3 is not None:  # charge what the settings sent really give (record-level, see dp3)
                z3 = settings_noise_multiplier(self.dp3.settings(len(parties), z3))
            events += [
                PrivacyEvent(
                    party=p,
                    level="DP3",
                    mechanism="gaussian",
                    noise_multiplier=z3,
                    step=round_number,
                    note=f"clipped update and indicator in a noised "
                    f"{self.privacy.dp3.mode} sum (record-level: sensitivity 2·clip and 1)",
                )
                for p in parties
            ]
        dp2 = self.privacy.dp2
        if dp2 is not None:
            cfg = TrainConfig(**self.train_config(round_number))
            for party in parties:
                dp = DPSGDConfig(self._dp2_noise(noise, party), dp2.max_grad_norm, dp2.sampling_rate)
                steps, q = planned_steps(int(party_rows[party]), cfg, dp)
                events.append(
                    PrivacyEvent(
                        party=party,
                        level="DP2",
                        mechanism="subsampled_gaussian",
                        noise_multiplier=dp.noise_multiplier,
                        sampling_rate=q,
                        count=steps,
                        step=round_number,
                        note="DP-SGD local training",
                    )
                )
        return events

    def fit_meta(
        self,
        round_number: int,
        selected: Sequence[str],
        party_rows: Mapping[str, int] | None = None,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
        """What each selected party gets with its `fit` request (DP2, DP3 settings) at this round's noise.

        `party_rows` are the released row counts: each party gets its own as `public_rows`, which its
        DP-SGD sampling rate and its SecAgg weight use instead of the exact count."""
        if self.privacy is None:
            return {p: {} for p in selected}, None
        noise = self.round_noise(self.noise, round_number)
        dp3 = self.dp3.settings(len(selected), noise["DP3"]) if self.dp3 is not None else None
        metas: dict[str, dict[str, Any]] = {}
        for party in selected:
            meta: dict[str, Any] = {"dp3": dp3} if dp3 is not None else {}
            if party_rows is not None:
                meta["public_rows"] = int(party_rows[party])
            if self.privacy.dp2 is not None:
                dp2 = {k: v for k, v in self.privacy.dp2.model_dump().items() if k != "schedule"}
                meta["dp2"] = {**dp2, "noise_multiplier": self._dp2_noise(noise, party)}
            metas[party] = meta
        return metas, dp3

    def check(self, events: Sequence[PrivacyEvent]) -> None:
        if self.ledger is not None:
            self.ledger.check(events)  # raises BudgetExceeded before any party spends anything

    def charge(self, events: Sequence[PrivacyEvent]) -> None:
        """Write-ahead charge: check all `events`, record them, hand the ledger to `on_charge` (durable).

        Call it before the request that releases anything; raises BudgetExceeded, recording nothing,
        if the events do not fit."""
        if self.ledger is None or not events:
            return
        self.ledger.check(events)
        for event in events:
            self.ledger.record(event)
        if self.on_charge is not None:
            self.on_charge(self.ledger.to_json(), list(events))

    def ledger_json(self) -> str | None:
        return self.ledger.to_json() if self.ledger is not None else None

    def summary(self) -> dict[str, Any] | None:
        """The ledger's account (record-level: what the budget binds), plus DP3's party-level ε beside it."""
        if self.ledger is None:
            return None
        summary = self.ledger.summary()
        party_level = self._dp3_party_level()
        if party_level is not None:
            summary["dp3_party_level"] = party_level
        return summary

    def _dp3_party_level(self) -> dict[str, Any] | None:
        """ε of the DP3 events alone for adding/removing a party's whole update (sum sensitivity clip, not
        2·clip): a weaker unit than the ledger's, reported for comparison with the literature only."""
        assert self.ledger is not None
        dp3 = [e for e in self.ledger.events if e.level == "DP3"]
        if not dp3 or self.privacy is None or self.privacy.dp3 is None:
            return None
        section = self.privacy.dp3
        per_round: dict[Any, int] = {}
        for e in dp3:
            per_round[e.step] = per_round.get(e.step, 0) + 1
        books = Ledger(
            {p: Budget(1e9, self.ledger.budget(p).delta) for p in self.ledger.parties},
            accountant=self.ledger.accountant,
        )  # an account, not a budget
        for e in dp3:
            z = float(e.noise_multiplier or 0.0)
            count_sigma = None
            if section.adaptive:  # the σ_b the round's settings used (DP3Aggregation.settings)
                count_sigma = section.count_noise or max(per_round[e.step] / 20, COUNT_NOISE_FACTOR * z)
            books.record(replace(e, noise_multiplier=party_level_from_record_level(z, count_sigma)))
        return {
            "unit": "party-level (add or remove one party's whole clipped update), DP3 events only",
            "note": "not the guarantee: the budget binds the record-level epsilon_spent; shown for comparison",
            "epsilon": {p: books.spent(p) for p in books.parties},
        }

    # --- calibration -----------------------------------------------------------------------------
    def _choose_noise(self, party_rows: Mapping[str, int], first_round: int) -> dict[str, float]:
        """Fixed noise as configured; 'auto' levels get the smallest z whose whole remaining run fits."""
        assert self.privacy is not None and self.ledger is not None
        sections = {"DP2": self.privacy.dp2, "DP3": self.privacy.dp3}
        fixed = {
            lvl: float(s.noise_multiplier)
            for lvl, s in sections.items()
            if s is not None and s.noise_multiplier != "auto"
        }
        auto = [lvl for lvl, s in sections.items() if s is not None and s.noise_multiplier == "auto"]
        if not auto:
            return fixed
        parties = sorted(party_rows)
        levels = {lvl: 1.0 for lvl, s in sections.items() if s is not None}
        by_factors: dict[tuple[tuple[str, float], ...], list[int]] = {}  # rounds grouped by schedule factors
        for r in range(first_round, self.config.run.rounds + 1):
            by_factors.setdefault(tuple(sorted(self.round_noise(levels, r).items())), []).append(r)
        spent = list(self.ledger.events)  # e.g. DP1 already charged at setup

        def plan(z: float) -> list[PrivacyEvent]:
            noise = {**fixed, **{lvl: z for lvl in auto}}
            events = list(spent)
            for rounds in by_factors.values():
                per_round = self.planned_events(party_rows, parties, rounds[0], noise)
                events += [replace(e, count=e.count * len(rounds), step=None) for e in per_round]
            return events

        budgets = {p: self.ledger.budget(p) for p in parties}
        z = calibrate_noise_multiplier(plan, budgets, accountant=self.privacy.accountant)
        chosen = {**fixed, **{lvl: z for lvl in auto}}
        if "DP2" in auto and self.privacy.per_party_noise:
            chosen.update(self._per_party_dp2(party_rows, by_factors, chosen, spent))
        return chosen

    def _per_party_dp2(
        self,
        party_rows: Mapping[str, int],
        by_factors: Mapping[Any, list[int]],
        chosen: Mapping[str, float],
        spent: Sequence[PrivacyEvent],
    ) -> dict[str, float]:
        """Each party's own DP-SGD noise: the least that fits *its* budget (other levels held fixed).

        DP2 noise stays inside a party and its cost is charged to that party alone, so a bank with
        many rows (small sampling rate) need not train with the noise the smallest bank needs. The
        multipliers follow from row counts the coordinator already knows; they reveal nothing new.
        """
        assert self.privacy is not None and self.ledger is not None
        per_party = {}
        for party in sorted(party_rows):

            def plan(z: float, party: str = party) -> list[PrivacyEvent]:
                noise = {**chosen, f"DP2:{party}": z}
                events = [e for e in spent if e.party == party]
                for rounds in by_factors.values():
                    per_round = self.planned_events(party_rows, [party], rounds[0], noise)
                    events += [replace(e, count=e.count * len(rounds), step=None) for e in per_round]
                return events

            per_party[f"DP2:{party}"] = calibrate_noise_multiplier(
                plan, {party: self.ledger.budget(party)}, accountant=self.privacy.accountant
            )
        return per_party
