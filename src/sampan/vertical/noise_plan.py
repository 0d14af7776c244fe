"""The run's ledger for vertical noise releases, charged write-ahead by the coordinator.

Every vertical DP release (a partner's noised WOE counts, the bank's noised WOE event counts, a
partner's noised GBDT histograms) is a Gaussian mechanism charged to one `sampan.privacy.ledger.Ledger`
per run *before* the request that triggers it leaves: the workflow persists the ledger with
``ctx.recorder.charge`` (durable), so a crash after the charge leaves the release counted (a rerun is a
fresh release, charged again). The noise levels the parties apply come from the same plan the request
carries (``dp_epsilon`` for WOE, ``hist_noise`` for GBDT, calibrated by the protocol's public rule), so
no protocol reads a privacy flag to decide whether to add noise. Each party's own `PartyPrivacyPolicy`
keeps checking and charging its own ledger as well: the run ledger is the consortium's view, the party's
is its own.

GBDT releases are charged as an upper bound fixed before training: every node of every tree
(``n_trees x (2^max_depth - 1)``), which is never less than the nodes the bank will request (the learner,
`sampan.models.gbdt.boost`, requests the root and the smaller child of each split above the last level:
at most ``2^(max_depth - 1)`` per tree; review R12-VER-7a). The parties' own accounts report the releases
that actually happened.

What each role learns from this module: nothing new (the plan uses only the job's settings and the
parties' feature counts, which the job already declares).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from sampan.models.gbdt import GBDTParams
from sampan.privacy.ledger import Budget, Ledger, PrivacyEvent
from sampan.vertical.gbdt import histogram_sensitivity2
from sampan.vertical.histograms import histogram_sigma
from sampan.vertical.woe import label_sensitivity2, partner_sensitivity2

__all__ = ["RunNoiseLedger", "woe_events", "gbdt_events", "ACCOUNTING_ONLY_EPSILON"]

# a run config with no budget still accounts every release (the parties' own policies enforce their budgets)
ACCOUNTING_ONLY_EPSILON = 1e6

Charge = Callable[[str, Mapping[str, Any]], None]


def woe_events(slots: Mapping[str, Mapping[str, Any]], bank: str, epsilon: float, delta: float) -> list[PrivacyEvent]:
    """Each partner's noised (event, row) counts and the bank's noised event counts of partner bins."""
    events = []
    partner_features = 0
    for party, meta in slots.items():
        if party == bank:
            continue
        d = len(meta["n_bins"])
        partner_features += d
        sens2 = partner_sensitivity2(d)
        events.append(PrivacyEvent(party, "DP1", "gaussian",
                                   noise_multiplier=histogram_sigma(sens2, epsilon, delta) / math.sqrt(sens2),
                                   note="federated WOE: noised per-bin counts of this partner's features"))
    if partner_features:
        sens2 = label_sensitivity2(partner_features)
        events.append(PrivacyEvent(bank, "DP1", "gaussian",
                                   noise_multiplier=histogram_sigma(sens2, epsilon, delta) / math.sqrt(sens2),
                                   note="federated WOE: noised event counts (labels) of partner bins"))
    return events


def gbdt_events(slots: Mapping[str, Mapping[str, Any]], bank: str, sigma: float,
                params: GBDTParams) -> list[PrivacyEvent]:
    """Every partner's noised node histograms, at most one per node of every tree."""
    nodes = int(params.n_trees) * (2 ** int(params.max_depth) - 1)
    return [PrivacyEvent(party, "DP1", "gaussian", count=max(nodes, 1),
                         noise_multiplier=sigma / math.sqrt(histogram_sensitivity2(len(meta["n_bins"]))),
                         note="vertical GBDT: noised histograms of this partner's features (upper bound: every node)")
            for party, meta in slots.items() if party != bank]


class RunNoiseLedger:
    """The run's ledger of vertical releases; `charge` persists it through ``charge`` before a release."""

    def __init__(self, parties: list[str], budget: tuple[float, float] | None, charge: Charge,
                 durable: str | None = None) -> None:
        self._persist = charge
        if durable:
            self.ledger = Ledger.from_json(durable)  # a resumed run keeps what was charged before the crash
        else:
            epsilon, delta = budget or (ACCOUNTING_ONLY_EPSILON, 1e-5)
            self.ledger = Ledger({p: Budget(epsilon, delta) for p in parties})

    def charge(self, events: list[PrivacyEvent], detail: Mapping[str, Any]) -> None:
        """Check (BudgetExceeded before anything is released), record, persist: in that order."""
        if not events:
            return
        self.ledger.check(events)
        for event in events:
            self.ledger.record(event)
        self._persist(self.ledger.to_json(), {**dict(detail), "events": [e.to_dict() for e in events]})

    def summary(self) -> dict[str, Any]:
        return self.ledger.summary()
