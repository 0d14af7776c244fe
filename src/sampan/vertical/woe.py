"""Federated WOE/IV binning for vertical scorecards.

Each party cuts its own columns into fine quantile bins on its own training rows. Event and row
counts per fine bin of a *partner's* feature need the bank's labels and the partner's bins together:
they come from the dealer-masked histogram protocol (`sampan.vertical.histograms`) with the per-row
values (y, 1) — the partner never sees a label, the bank sees only per-bin counts. The bank then
merges fine bins into monotone coarse bins, computes WOE and IV for every feature (the IV report is
the bank's, for feature selection) and sends each partner the WOE table of its own features, so the
partner can transform its columns for the scorecard's logistic regression.

Leakage, stated: the bank learns per-fine-bin counts and event counts of partner features; each
partner learns the WOE (a smoothed log event-rate ratio) of its own bins. With `dp_epsilon` set, all
counts go through one Gaussian mechanism before anything is derived from them (DP1 on the counts,
with respect to one customer's row), so the WOE tables a partner receives — and the IV report — are
differentially private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from sampan.models.gbdt import apply_bins, make_slots, quantile_bin_edges
from sampan.models.scorecard import WoeTable, monotone_bins, woe_iv
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.transport import Transport
from sampan.vertical.channel import SealedChannels
from sampan.vertical.dealer import Dealer, DealerStream
from sampan.vertical.histograms import (
    dealer_sums, decode_sums, encode_values, flat_index, node_masks, partner_sums, secret_permutation,
)
from sampan.vertical.secure_lr import receive
from sampan.vertical.training import Relay
from sampan.wire import Message

__all__ = ["VerticalWoeParty", "federated_woe", "WoeOutcome", "REVEALS"]

REVEALS = (
    "Federated WOE/IV: the bank learns event and row counts per fine bin of every feature (partner features "
    "through masked histograms: the partner sees no label); each partner learns the WOE table of its own "
    "features. With DP on, every count passes one Gaussian mechanism first."
)


@dataclass
class WoeOutcome:
    iv: dict[str, dict[str, float]]     # party -> feature -> IV (the bank's report)
    selected: dict[str, list[str]]
    epsilon: float | None


class VerticalWoeParty:
    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels]) -> None:
        self.name, self._X, self._y, self.feature_names, self._channels = name, X_aligned, y_aligned, feature_names, channels
        self.tables: list[WoeTable] | None = None   # this party's own features' tables (selected ones)
        self.columns: list[int] = []
        self.report: dict[str, dict[str, Any]] = {}  # bank: IV per party and feature
        self._state: dict[str, Any] = {}

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"woe.setup": self.setup, "woe.mask": self.mask, "woe.sum": self.sum, "woe.finish": self.finish,
                "woe.apply": self.apply}

    def setup(self, msg: Message) -> Message:
        train = msg.arrays["train_rows"]
        X = self._X()[train]
        edges = [quantile_bin_edges(X[:, j], int(msg.meta["fine_bins"])) for j in range(X.shape[1])]
        bins = apply_bins(X, edges)
        slots = make_slots(self.name, self.feature_names, edges)
        self._state = {"edges": edges, "bins": bins, "slots": slots, "train": train,
                       "dealer": DealerStream(bytes(msg.arrays["dealer_seed"]))}
        bank = str(msg.meta["bank"])
        meta = {"n_bins": [s.n_bins for s in slots], "names": list(self.feature_names)}
        if self.name == bank:
            return msg.reply("woe.setup", meta=meta)
        sigma = secret_permutation(self._channels().prg(bank, f"woe-sigma/{bank}/{self.name}", len(train)))
        beta = np.empty_like(bins)
        beta[sigma] = bins
        return msg.reply("woe.setup", {"beta": beta}, meta)

    def mask(self, msg: Message) -> Message:
        """Bank: (y, 1) masked by dealer randomness at each partner's secret row order."""
        y = self._y()
        if y is None:
            raise ValueError(f"party {self.name!r} has no labels: only the label holder drives WOE binning")
        train = self._state["train"]
        values = [encode_values(y[train].astype(float)), encode_values(np.ones(len(train)))]
        seed, ch, out = bytes(msg.arrays["dealer_seed"]), self._channels(), {}
        for p in msg.meta["partners"]:
            sigma = secret_permutation(ch.prg(p, f"woe-sigma/{self.name}/{p}", len(train)))
            _, a = node_masks(seed, f"woe/{p}", sigma, 2)
            out[f"to:{p}"] = ch.seal_arrays(p, {"v": np.stack([values[0] + a[0], values[1] + a[1]])})
        return msg.reply("woe.masked", out)

    def sum(self, msg: Message) -> Message:
        """Partner: per-fine-bin sums of the masked values plus the dealer pad, sealed to the bank."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = str(msg.meta["bank"])
        st = self._state
        offsets = np.array([s.offset for s in st["slots"]], dtype=np.int64)
        total = int(sum(s.n_bins for s in st["slots"]))
        pad = st["dealer"].draw("woe/pad", 2 * total)
        sums = partner_sums(flat_index(st["bins"], offsets), total, list(inbox.pop((bank, "v"))), pad)
        return msg.reply("woe.sum", {f"to:{bank}": self._channels().seal_arrays(bank, {"s": sums})})

    def finish(self, msg: Message) -> Message:
        """Bank: counts -> (DP) -> monotone bins -> WOE/IV; seal each partner its own tables."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        st, y = self._state, self._y()
        assert y is not None
        train = st["train"]
        partners = list(msg.meta["partners"])
        counts: dict[str, tuple[np.ndarray, np.ndarray, list[Any], list[np.ndarray]]] = {}
        own_offsets = np.array([s.offset for s in st["slots"]], dtype=np.int64)
        own_total = int(sum(s.n_bins for s in st["slots"]))
        idx = (st["bins"].astype(np.int64) + own_offsets).ravel()
        d = st["bins"].shape[1]
        ev = np.bincount(idx, weights=np.repeat(y[train].astype(float), d), minlength=own_total)
        tot = np.bincount(idx, minlength=own_total).astype(float)
        counts[self.name] = (ev, tot, self.feature_names, st["edges"])
        for p in partners:
            sums = decode_sums(inbox.pop((p, "s")) - msg.arrays[f"dealer:{p}"])
            meta = msg.meta["slots"][p]
            counts[p] = (np.rint(sums[0]), np.rint(sums[1]), list(meta["names"]), [])
        epsilon = msg.meta.get("dp_epsilon")
        if epsilon:
            n_features = sum(len(c[2]) for c in counts.values())
            mech = GaussianMechanism.calibrate(float(np.sqrt(2 * n_features)), float(epsilon), float(msg.meta["dp_delta"]))
            for p, (e, t, names, edges) in list(counts.items()):
                counts[p] = (np.maximum(mech.release(e), 0), np.maximum(mech.release(t), 1), names, edges)
        min_iv = float(msg.meta["min_iv"])
        ch, out = self._channels(), {}
        for p, (e, t, names, edges) in counts.items():
            nb = ([len(x) + 1 for x in edges] if p == self.name else list(msg.meta["slots"][p]["n_bins"]))
            offs = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(int)
            tables, report = [], {}
            for j, name in enumerate(names):
                fe, ft = e[offs[j]:offs[j] + nb[j]], t[offs[j]:offs[j] + nb[j]]
                mapping = monotone_bins(fe, ft, max_bins=int(msg.meta["max_bins"]))
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
        return msg.reply("woe.finished", out, {"selected": {p: len([tb for tb in r["tables"] if tb["iv"] >= min_iv])
                                                           for p, r in self.report.items()},
                                                "epsilon": epsilon})

    def apply(self, msg: Message) -> Message:
        """Partner: keep the WOE tables of its selected features."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = str(msg.meta["bank"])
        index, woe = inbox.pop((bank, "index")), inbox.pop((bank, "woe"))
        n_coarse, mapping = inbox.pop((bank, "n_coarse")), inbox.pop((bank, "mapping"))
        edges = self._state["edges"]
        tables, w0, m0 = [], 0, 0
        for j, k in zip(index.tolist(), n_coarse.tolist()):
            nf = len(edges[j]) + 1
            tables.append(WoeTable(self.feature_names[j], edges[j], mapping[m0:m0 + nf], woe[w0:w0 + k], float("nan")))
            w0, m0 = w0 + k, m0 + nf
        self.tables, self.columns = tables, index.tolist()
        return msg.reply("woe.applied", meta={"features": len(tables)})

    def transform(self, X_raw: np.ndarray) -> np.ndarray:
        """This party's columns as WOE values of its selected features."""
        if self.tables is None:
            raise ValueError(f"party {self.name!r} has no WOE tables (run federated WOE first)")
        return np.stack([t.transform(X_raw[:, j]) for t, j in zip(self.tables, self.columns)], axis=1)


def federated_woe(transport: Transport, run_id: str, bank: str, partners: list[str], train_rows: np.ndarray, *,
                  fine_bins: int = 20, max_bins: int = 6, min_iv: float = 0.02, dp_epsilon: float | None = None,
                  dp_delta: float = 1e-5) -> dict[str, Any]:
    """Coordinator: setup, masked counts, dealer sums, bank's binning, tables to partners."""
    relay = Relay(run_id)
    parties = [bank, *partners]
    dealer = Dealer(parties)
    rows = np.asarray(train_rows, dtype=np.int64)
    setup = relay.wave(transport, (relay.request(p, "woe.setup", {
        "train_rows": rows, "dealer_seed": np.frombuffer(dealer.seeds[p], dtype=np.uint8)},
        {"fine_bins": fine_bins, "bank": bank}) for p in parties))
    slots = {r.sender: dict(r.meta) for r in setup}
    beta = {r.sender: r.arrays["beta"] for r in setup if r.sender != bank}
    relay.wave(transport, [relay.request(bank, "woe.mask", {"dealer_seed": np.frombuffer(dealer.seeds[bank], dtype=np.uint8)},
                                         {"partners": partners})])
    relay.wave(transport, (relay.request(p, "woe.sum", meta={"bank": bank}) for p in partners))
    dealer_arrays = {}
    everyone = np.arange(len(rows))
    for p in partners:
        nb = slots[p]["n_bins"]
        offsets = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(np.int64)
        total = int(sum(nb))
        pad = dealer.stream(p).draw("woe/pad", 2 * total)
        dealer_arrays[f"dealer:{p}"] = dealer_sums(flat_index(beta[p], offsets), total, dealer.seeds[bank], f"woe/{p}",
                                                   everyone, 2, pad)
    finished = relay.wave(transport, [relay.request(bank, "woe.finish", dealer_arrays, {
        "partners": partners, "slots": {p: slots[p] for p in partners}, "max_bins": max_bins, "min_iv": min_iv,
        "dp_epsilon": dp_epsilon, "dp_delta": dp_delta})])[0]
    relay.wave(transport, (relay.request(p, "woe.apply", meta={"bank": bank}) for p in partners))
    return dict(finished.meta)

