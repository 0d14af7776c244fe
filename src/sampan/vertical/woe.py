"""Federated WOE/IV binning for vertical scorecards.

Each party cuts its own columns into fine quantile bins on its own training rows. Event and row
counts per fine bin of a *partner's* feature need the bank's labels and the partner's bins together:
they come from the dealer-masked histogram protocol (`sampan.vertical.histograms`) with the per-row
values (y, 1) — the partner never sees a label, the bank sees only per-bin counts. The bank then
merges fine bins into monotone coarse bins, computes WOE and IV for every feature (the IV report is
the bank's, for feature selection) and sends each partner the WOE table of its own features, so the
partner can transform its columns for the scorecard's logistic regression.

This module holds the parties' handlers; the coordinator's driver is `sampan.vertical.woe_coordinator` and the
receipt tables `sampan.vertical.woe_views` (both re-exported here). Each party bins its columns once into a uint8
matrix, block by block (`sampan.models.gbdt_hist.bin_matrix`) from its table read in place at the aligned
training rows (as vertical GBDT), and counts per bin from it: no float copy of the aligned or training rows, no
n x features int64 index.

What each role learns (also in the run receipt: REVEALS, and field by field VIEWS):

* the bank: event and row counts per fine bin of its own features (exact: its own data) and of every
  partner feature. Without DP those are exact. With `dp_epsilon` set, each *partner* adds Gaussian noise
  to its per-bin (event, row) sums inside the masked sum, before anything reaches the bank, so the bank
  only ever decodes noised counts of partner bins. The partner calibrates and accounts for that noise
  itself (`histograms.histogram_privacy`, the account vertical GBDT uses), against replacement of one
  customer's partner record: the customer leaves one bin and enters another in each of the partner's d
  features, moving two event counts by at most 1 and two row counts by 1, so sensitivity^2 = 4 d.
* a partner: the WOE table (fine -> coarse mapping and WOE per coarse bin) of its selected features.
  It knows its own noise and its own bin sizes, so the partner's noise protects nothing from it; with
  DP on, the bank adds Gaussian noise to the event counts of partner bins (the labels) before binning,
  accounted to the bank with sensitivity^2 = sum of partners' d (one customer's label moves one event
  count per partner feature), so the tables a partner receives are DP with respect to the bank's labels.
* the coordinator (dealer): every partner's binned records in a secret row order (beta: the joint
  distribution of its binned features, unlinked to customers; the order is fresh per setup, from a
  nonce the partner seals to the bank, and each party bins one training row set per run, refusing
  repeated rows: `sampan.vertical.rows`), each party's feature names and bin counts,
  and how many features of each partner passed the IV threshold (without DP, of the bank's own too; with
  DP only partners', computed from the noised counts). See `sampan.vertical.histograms` for what
  a malicious dealer could corrupt.

The bank's IV report is computed from the noised partner counts (post-processing). Both noises are
calibrated to `dp_epsilon` at `dp_delta` by zCDP; each party's account is in the result's "privacy".
Each party checks the request against its own `PartyPrivacyPolicy` (minimum noise multiplier, DP
required on WOE, budget) and charges its own ledger before its reply leaves; every `woe.setup` draws a
fresh instance nonce at the party, and a second `woe.sum` / `woe.finish` of one instance is refused, so
a coordinator re-running WOE gets a fresh, charged release each time (the party's account adds up over
the run) or a refusal. The partner states the sigma it used inside its sealed reply; the bank checks it
against the agreed level and sets its totals-check tolerance from it alone.
Both treat the partner's fine-bin edges (quantiles of its own training columns) as fixed: one customer
can move an edge, which the epsilon does not cover (see `histograms.histogram_privacy`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sampan.crypto.channel import SealedChannels
from sampan.crypto.dealer import DealerStream
from sampan.models.gbdt import bin_matrix, make_slots, quantile_bin_edges
from sampan.models.gbdt_hist import node_histograms
from sampan.models.scorecard import WoeTable, monotone_bins, woe_iv
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.privacy.randomness import secure_generator
from sampan.vertical.histograms import (
    HistogramAccount,
    check_feature_totals,
    decode_sums,
    encode_values,
    histogram_sigma,
    node_masks,
    partner_sums,
    reported_sigma,
    sealed_nonce,
    secret_permutation,
    sigma_label,
)
from sampan.vertical.rows import RunRows, check_splits, per_run
from sampan.vertical.secure_lr import receive
from sampan.vertical.woe_coordinator import federated_woe
from sampan.vertical.woe_views import REVEALS, VIEWS, label_sensitivity2, partner_sensitivity2
from sampan.wire import Message

__all__ = ["VerticalWoeParty", "federated_woe", "WoeOutcome", "REVEALS", "VIEWS", "partner_sensitivity2",
           "label_sensitivity2"]

@dataclass
class WoeOutcome:
    iv: dict[str, dict[str, float]]     # party -> feature -> IV (the bank's report)
    selected: dict[str, list[str]]
    epsilon: float | None


class VerticalWoeParty:
    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels],
                 policy: PartyPrivacyPolicy | None = None, run_rows: Callable[[str], RunRows] | None = None,
                 table: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self._run_rows = run_rows or per_run(name)  # the run's row rules, shared with the party's other protocols
        self.name, self._X, self._y = name, X_aligned, y_aligned
        self._table = table  # the party's table and its aligned rows: setup bins in place (review R15-GBDT-2)
        self.feature_names, self._channels = feature_names, channels
        self.policy = policy or PartyPrivacyPolicy()  # min noise, DP required or not, this party's own ledger
        self._account = HistogramAccount()          # this party's WOE releases over the whole run
        self.tables: list[WoeTable] | None = None   # this party's own features' tables (selected ones)
        self.columns: list[int] = []
        self.report: dict[str, dict[str, Any]] = {}  # bank: IV per party and feature
        self._state: dict[str, Any] = {}
        self.privacy: dict[str, Any] = {}           # this party's DP account of its WOE releases in this run

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"woe.setup": self.setup, "woe.mask": self.mask, "woe.sum": self.sum, "woe.finish": self.finish,
                "woe.apply": self.apply}

    def setup(self, msg: Message) -> Message:
        # the table read in place at the aligned rows (review R15-GBDT-2: no float copy of every aligned row)
        X, at = self._table() if self._table is not None else (self._X(), None)
        n = len(X) if at is None else len(at)
        train, _ = check_splits(self.name, msg.arrays["train_rows"], np.zeros(0, dtype=np.int64), n)
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "woe.setup")
        self._run_rows(msg.run_id).bind_train("woe.setup", train)  # beta once per run, for one row set
        rows = train if at is None else np.asarray(at, dtype=np.int64)[train]  # rows of X itself
        # one column at a time, then binned block by block: no float64 copy of the training rows (issue 15)
        edges = [quantile_bin_edges(X[rows, j], int(msg.meta["fine_bins"])) for j in range(X.shape[1])]
        bins = bin_matrix(X, edges, rows=rows)
        slots = make_slots(self.name, self.feature_names, edges)
        self._state = {"edges": edges, "bins": bins, "slots": slots, "train": train,
                       "dealer": DealerStream(bytes(msg.arrays["dealer_seed"])),
                       "instance": secrets.token_hex(16)}  # this party's nonce for this protocol instance
        meta = {"n_bins": [s.n_bins for s in slots], "names": list(self.feature_names)}
        if self.name == bank:
            return msg.reply("woe.setup", meta=meta)
        # A fresh secret row order per setup: the partner's nonce, sealed to the bank, is in the PRG label, so no
        # two setups (whatever rows the coordinator sends) share an order it could line up.
        nonce = secrets.token_bytes(16)
        sigma = secret_permutation(self._channels().prg(bank, sigma_label("woe", bank, self.name, nonce), len(train)))
        beta = np.empty_like(bins)
        beta[sigma] = bins
        sealed = self._channels().seal_arrays(bank, {"sigma_nonce": np.frombuffer(nonce, dtype=np.uint8)})
        return msg.reply("woe.setup", {"beta": beta, f"to:{bank}": sealed}, meta)

    def mask(self, msg: Message) -> Message:
        """Bank: (y, 1) masked by dealer randomness at each partner's secret row order."""
        y = self._y()
        if y is None:
            raise ValueError(f"party {self.name!r} has no labels: only the label holder drives WOE binning")
        train = self._state["train"]
        values = [encode_values(y[train].astype(float)), encode_values(np.ones(len(train)))]
        seed, ch, out = bytes(msg.arrays["dealer_seed"]), self._channels(), {}
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, ch, inbox)
        for p in msg.meta["partners"]:
            nonce = sealed_nonce(inbox, p, self.name, "woe.mask")
            sigma = secret_permutation(ch.prg(p, sigma_label("woe", self.name, p, nonce), len(train)))
            _, a = node_masks(seed, f"woe/{p}", sigma, 2)
            out[f"to:{p}"] = ch.seal_arrays(p, {"v": np.stack([values[0] + a[0], values[1] + a[1]])})
        return msg.reply("woe.masked", out)

    def sum(self, msg: Message) -> Message:
        """Partner: per-fine-bin sums of the masked values plus the dealer pad (and its DP noise), sealed to the bank.

        The noise goes in here, inside the masked sum: noise the bank added after decoding would leave the
        exact counts in the bank's hands."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "woe.sum")
        st = self._state
        total = int(sum(s.n_bins for s in st["slots"]))
        pad = st["dealer"].draw("woe/pad", 2 * total)
        noise, meta = None, {}
        epsilon = msg.meta.get("dp_epsilon")
        sens2 = partner_sensitivity2(len(st["slots"]))
        delta = float(msg.meta.get("dp_delta") or 1e-5)
        sigma = histogram_sigma(sens2, float(epsilon), delta) if epsilon else 0.0
        # the policy first: refused (nothing released) or charged (write-ahead) before the reply exists
        self.policy.admit_histograms(self.name, "woe", instance=st["instance"], release="sum", sigma=sigma,
                                     sensitivity2=sens2)
        if sigma:
            draw = secure_generator().normal(0.0, sigma, (2, total))
            noise = [encode_values(draw[0]), encode_values(draw[1])]
            self.privacy = {**self._account.add(1, sens2, sigma, delta),
                            "protects": f"{self.name}'s bins from the bank (per-bin event and row counts)",
                            "ledger": self.policy.account(self.name)}
            meta = {"privacy": self.privacy}
        sums = partner_sums(st["bins"], [s.n_bins for s in st["slots"]], list(inbox.pop((bank, "v"))), pad, noise)
        sealed = {"s": sums, "sigma": np.array([sigma])}  # the bank sets its check's tolerance from this alone
        return msg.reply("woe.sum", {f"to:{bank}": self._channels().seal_arrays(bank, sealed)}, meta)

    def finish(self, msg: Message) -> Message:
        """Bank: counts -> (DP) -> monotone bins -> WOE/IV; seal each partner its own tables."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        st, y = self._state, self._y()
        assert y is not None
        train = st["train"]
        partners = list(msg.meta["partners"])
        counts: dict[str, tuple[np.ndarray, np.ndarray, list[Any], list[np.ndarray]]] = {}
        # own event and row counts per fine bin, from the uint8 matrix block by block (exact: sums of 0/1)
        ev, tot = node_histograms(st["bins"], [s.n_bins for s in st["slots"]], [np.arange(len(train))],
                                  np.stack([y[train].astype(float), np.ones(len(train))]))[0]
        counts[self.name] = (ev, tot, self.feature_names, st["edges"])
        epsilon = msg.meta.get("dp_epsilon")
        delta = float(msg.meta.get("dp_delta") or 1e-5)
        n_partner_features = sum(len(msg.meta["slots"][p]["n_bins"]) for p in partners)
        label_sens2 = label_sensitivity2(n_partner_features) if partners else 1.0
        label_sigma = histogram_sigma(label_sens2, float(epsilon), delta) if epsilon and partners else 0.0
        self.policy.admit_histograms(self.name, "woe", instance=st["instance"], release="finish", sigma=label_sigma,
                                     sensitivity2=label_sens2)
        for p in partners:  # noised by the partner when DP is on: the bank never holds exact partner counts
            meta = msg.meta["slots"][p]
            agreed = (histogram_sigma(partner_sensitivity2(len(meta["n_bins"])), float(epsilon), delta)
                      if epsilon else 0.0)  # the level the job agreed, by the same public rule
            sigma_p = reported_sigma({"sigma": inbox.pop((p, "sigma"), np.array([np.nan]))}, agreed,
                                     bank=self.name, partner=p)  # the partner's own word, sealed
            sums = decode_sums(inbox.pop((p, "s")) - msg.arrays[f"dealer:{p}"])
            check_feature_totals(sums, list(meta["n_bins"]), np.array([y[train].sum(), len(train)], dtype=float),
                                 sigma_p, bank=self.name, partner=p, node="all training rows")
            counts[p] = (np.rint(sums[0]), np.rint(sums[1]), list(meta["names"]), [])
        privacy: dict[str, Any] = {}
        if label_sigma:
            # The labels in the partners' tables: the bank noises the event counts of partner bins (its own
            # bins' tables stay with it, exact). Charged to the bank's own ledger above, before any table leaves.
            sigma = label_sigma
            rng = secure_generator()
            self.privacy = {**self._account.add(1, label_sens2, sigma, delta),
                            "protects": f"{self.name}'s labels in the WOE tables partners receive",
                            "ledger": self.policy.account(self.name)}
            privacy[self.name] = self.privacy
            for p in partners:
                e, t, names, edges = counts[p]
                t = np.maximum(t, 1)
                counts[p] = (np.clip(e + rng.normal(0.0, sigma, e.shape), 0, t), t, names, edges)
        min_iv = float(msg.meta["min_iv"])
        ch, out = self._channels(), {}
        for p, (e, t, names, edges) in counts.items():
            nb = ([len(x) + 1 for x in edges] if p == self.name else list(msg.meta["slots"][p]["n_bins"]))
            offs = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(int)
            tables, report = [], {}
            for j, name in enumerate(names):
                fe, ft = e[offs[j]:offs[j] + nb[j]], t[offs[j]:offs[j] + nb[j]]
                mapping = monotone_bins(fe, ft, max_bins=int(msg.meta["max_bins"]),
                                        monotone=bool(msg.meta.get("monotone", True)))
                ce = np.bincount(mapping, weights=fe)
                ct = np.bincount(mapping, weights=ft)
                woe, iv = woe_iv(ce, ct)
                report[name] = iv
                tables.append({"feature": name, "index": j, "mapping": mapping, "woe": woe, "iv": iv,
                               "events": ce, "totals": ct})
            self.report[p] = {"iv": report, "tables": tables}
            chosen = [tb for tb in tables if tb["iv"] >= min_iv] or [max(tables, key=lambda tb: tb["iv"])]
            if p == self.name:
                self.tables = [WoeTable(tb["feature"], edges[tb["index"]], tb["mapping"], tb["woe"], tb["iv"],
                                        tb["events"], tb["totals"]) for tb in chosen]
                self.columns = [tb["index"] for tb in chosen]
            else:
                out[f"to:{p}"] = ch.seal_arrays(p, {
                    "index": np.array([tb["index"] for tb in chosen], dtype=np.int64),
                    "woe": np.concatenate([tb["woe"] for tb in chosen]),
                    "n_coarse": np.array([len(tb["woe"]) for tb in chosen], dtype=np.int64),
                    "mapping": np.concatenate([tb["mapping"] for tb in chosen])})
        # under DP only partners' counts (IV from noised counts); the bank's own come from its exact labels
        shown = [p for p in self.report if not (label_sigma and p == self.name)]
        return msg.reply("woe.finished", out, {"selected": {p: len([tb for tb in self.report[p]["tables"]
                                                                    if tb["iv"] >= min_iv]) for p in shown},
                                                "epsilon": epsilon, "privacy": privacy})

    def apply(self, msg: Message) -> Message:
        """Partner: keep the WOE tables of its selected features."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "woe.apply")
        index, woe = inbox.pop((bank, "index")), inbox.pop((bank, "woe"))
        n_coarse, mapping = inbox.pop((bank, "n_coarse")), inbox.pop((bank, "mapping"))
        edges = self._state["edges"]
        tables, w0, m0 = [], 0, 0
        for j, k in zip(index.tolist(), n_coarse.tolist(), strict=False):
            nf = len(edges[j]) + 1
            tables.append(WoeTable(self.feature_names[j], edges[j], mapping[m0:m0 + nf], woe[w0:w0 + k], float("nan")))
            w0, m0 = w0 + k, m0 + nf
        self.tables, self.columns = tables, index.tolist()
        return msg.reply("woe.applied", meta={"features": len(tables)})

    def transform(self, X_raw: np.ndarray) -> np.ndarray:
        """This party's columns as WOE values of its selected features."""
        if self.tables is None:
            raise ValueError(f"party {self.name!r} has no WOE tables (run federated WOE first)")
        return np.stack([t.transform(X_raw[:, j]) for t, j in zip(self.tables, self.columns, strict=True)], axis=1)
