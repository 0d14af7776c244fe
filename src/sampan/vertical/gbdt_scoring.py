"""Joint scoring with a vertical GBDT: the bank's and the partners' handlers (`VerticalGBDTParty` mixes them in).

The bank seals the query (aligned positions of held-out rows, or applicant ids) to the partners, each
partner answers the routing bit of every node it owns for those rows, sealed to the bank, and the bank
walks its trees. Held-out evaluation follows the row rules (`sampan.vertical.rows`: the fixed test rows,
each model once); applicant results stay at the bank (``results``).

What each role learns: the bank, every partner split's routing bit for the scored rows and the scores
(aggregate metrics only leave it, for held-out rows); a partner, which of its customers are scored and
nothing about the trees beyond its own splits; the coordinator, sizes and the request ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sampan.models.gbdt import GBDTModel, GBDTParams, Tree, apply_bins, bin_matrix, goes_left
from sampan.vertical.applicants import ApplicantsPolicy, applicant_ids, pack_ids, unpack_ids
from sampan.vertical.rows import fingerprint
from sampan.vertical.scoring import check_tag, request_tag
from sampan.vertical.secure_lr import receive
from sampan.wire import Message

log = logging.getLogger(__name__)

__all__ = ["GBDTScoring"]


class GBDTScoring:
    """The scoring handlers of `VerticalGBDTParty` (its attributes: model, thresholds, edges, channels, rows)."""

    name: str
    model: GBDTModel | None
    importance: dict[str, float]
    thresholds: dict[tuple[int, int], tuple[int, int, bool]]
    edges: list[np.ndarray]
    results: dict[str, list[dict[str, Any]]]
    _channels: Callable[[], Any]
    _aligned_rows: Callable[[], np.ndarray | None] | None
    _run_rows: Callable[[str], Any]
    _y: Callable[[], np.ndarray | None]
    feature_names: list[str]
    _ids: np.ndarray | None
    _X_full: np.ndarray | None
    _y_full: np.ndarray | None
    _index: dict[str, int] | None
    _scoring: dict[str, tuple[np.ndarray, list[str], float, np.ndarray]]
    applicants: ApplicantsPolicy | None = None  # the bank's applicants files (`sampan.vertical.applicants`)

    def _full_table(self) -> np.ndarray:
        """The party's whole feature table (scoring reaches rows outside the aligned training set)."""
        if self._X_full is None:
            raise ValueError(f"party {self.name!r}: no full feature table to score applicants from")
        return self._X_full

    def part_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """This party's part of the trained GBDT: its bin edges and thresholds (+ trees at the bank)."""
        keys = sorted(self.thresholds)
        arrays = {"edges": np.concatenate(self.edges) if self.edges else np.zeros(0),
                  "edge_counts": np.array([len(e) for e in self.edges], dtype=np.int64),
                  "thresholds": np.array([[t, n, f, b, int(m)] for (t, n), (f, b, m) in
                                          ((k, self.thresholds[k]) for k in keys)], dtype=np.int64).reshape(-1, 5)}
        meta: dict[str, Any] = {"party": self.name, "kind": "vertical-gbdt", "feature_names": list(self.feature_names)}
        if self.model is not None:
            meta.update({"base_score": self.model.base_score, "trees": [t.to_dict() for t in self.model.trees],
                         "params": self.model.params.__dict__, "importance": dict(self.importance)})
        return arrays, meta

    def load_part(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        counts = np.asarray(arrays["edge_counts"], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        self.edges = [np.asarray(arrays["edges"][bounds[j]:bounds[j + 1]], dtype=float) for j in range(len(counts))]
        rows = np.asarray(arrays["thresholds"], dtype=np.int64)
        if rows.shape[1:] == (4,):  # a part saved before missing bins: missing values go right
            rows = np.hstack([rows, np.zeros((len(rows), 1), dtype=np.int64)])
        self.thresholds = {(int(t), int(n)): (int(f), int(b), bool(m)) for t, n, f, b, m in rows.tolist()}
        if "trees" in meta:
            self.model = GBDTModel(float(meta["base_score"]), [Tree.from_dict(t) for t in meta["trees"]],
                                   GBDTParams(**meta["params"]), best_iteration=len(meta["trees"]))
            self.importance = {str(k): float(v) for k, v in (meta.get("importance") or {}).items()}

    # --- joint prediction and scoring -----------------------------------------------------------------
    def _query_rows(self, query: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Full-table rows for aligned positions or registration numbers (-1 = not known here)."""
        if "aligned" in query:
            aligned = self._aligned_rows() if self._aligned_rows else None
            if aligned is None:
                raise ValueError(f"party {self.name!r}: no aligned rows; run PSI alignment first")
            return aligned[query["aligned"]], []
        applicants = unpack_ids(query["ids"])
        if self._index is None:
            self._index = {str(i).strip(): r for r, i in enumerate(self._ids if self._ids is not None else [])}
        return np.array([self._index.get(a.strip(), -1) for a in applicants], dtype=np.int64), applicants

    def score_start(self, msg: Message) -> Message:
        """Bank: note the query, seal it to every partner (the coordinator never sees who applied)."""
        started = time.perf_counter()
        if self.model is None:
            raise ValueError(f"party {self.name!r} holds no trained GBDT")
        if "aligned" in msg.arrays:  # held-out evaluation: only the dataset's test rows, once per model
            aligned = self._aligned_rows() if self._aligned_rows else None
            n = 0 if aligned is None else len(aligned)
            model = "gbdt:" + fingerprint(*self.part_arrays())
            query = {"aligned": self._run_rows(msg.run_id).admit_evaluation(model, msg.arrays["aligned"], n, self._y)}
        else:
            ids = applicant_ids(self.name, self.applicants, msg.meta)  # the bank's own file only where it declared it
            query = {"ids": pack_ids(self.name, ids)}  # padded (R13-SRV-11)
        rows, applicants = self._query_rows(query)
        if applicants and (rows < 0).any():  # review R12-VER-8: answered like a known one (its nodes take the
            # default direction, as a partner's unknown id does), so the coordinator cannot test bank membership
            missing = [k + 1 for k, r in enumerate(rows) if r < 0]
            log.warning("party %s: applicants at positions %s of %d are not in its table; its nodes take the default "
                        "direction (local log only)", self.name, missing[:20], len(rows))
        owners = sorted({o for tree in self.model.trees for o in tree.owner if o and o != self.name})
        partners = [str(p) for p in msg.meta["partners"]]
        if sorted(set(partners)) != sorted(set(partners) | set(owners)):  # review R13-SCO-17: no owner left out
            raise ValueError(f"party {self.name!r} refuses the scoring request: it names partners {sorted(partners)}, "
                             f"the model's trees have splits of {owners}")
        tag = request_tag()  # review R13-SCO-16: each answer must carry it back (no replay across requests)
        self._scoring[str(msg.meta["request_id"])] = (rows, applicants, started, tag)
        ch = self._channels()
        return msg.reply("vgb.score_started", {f"to:{p}": ch.seal_arrays(p, {**query, "request": tag})
                                               for p in partners})

    def score_partial(self, msg: Message) -> Message:
        """Partner: its direction at each of its nodes for each queried row (unknown rows flagged)."""
        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        bank = self._channels().require_role(str(msg.meta["bank"]), "label_holder", "vgb.score_partial")
        query = {name: v for (sender, name), v in inbox.items() if sender == bank}
        tag = query.pop("request", None)
        if tag is None:
            raise ValueError(f"party {self.name!r}: the bank's GBDT scoring query carries no request tag")
        rows, _ = self._query_rows(query)
        keys = sorted(self.thresholds)
        known = rows >= 0
        bits = np.zeros((len(rows), len(keys)), dtype=np.uint8)
        if known.any() and keys:
            binned = bin_matrix(self._full_table(), self.edges, missing=True, rows=rows[known])  # no float copy
            bits[known] = split_directions(binned, self.thresholds, self.edges, keys)
        return msg.reply("vgb.score_partial", {f"to:{bank}": self._channels().seal_arrays(bank, {
            "bits": bits, "keys": np.array(keys, dtype=np.int64).reshape(-1, 2),
            "missing": (~known).astype(np.uint8), "request": tag})})

    def score_finish(self, msg: Message) -> Message:
        """Bank: walk the trees; PDs stay here; held-out evaluation returns aggregate metrics only."""
        from sampan.metrics import brier_score, ks_statistic, roc_auc
        from sampan.metrics.score_bands import score_bands
        from sampan.vertical.scoring import ScoreCard

        inbox: dict[tuple[str, str], np.ndarray] = {}
        receive(msg, self._channels(), inbox)
        model = self.model
        assert model is not None
        rows, applicants, started, tag = self._scoring.pop(str(msg.meta["request_id"]))
        partners = list(msg.meta["partners"])
        for p in partners:
            check_tag(self.name, p, inbox.pop((p, "request"), None), tag)
        own_missing = rows < 0  # applicants the bank does not hold (R12-VER-8): its nodes take the default direction
        # binned block by block from the table itself: no float copy of the scored rows (issue 15)
        bins = bin_matrix(self._full_table(), self.edges, missing=True, rows=np.where(own_missing, 0, rows))
        partner_bits = {p: (inbox.pop((p, "bits")),
                            {tuple(k): c for c, k in enumerate(inbox.pop((p, "keys")).tolist())},
                            inbox.pop((p, "missing")).astype(bool)) for p in partners}
        n = len(rows)
        raw = np.full(n, model.base_score)
        per_tree = []
        for t, tree in enumerate(model.trees):
            decisions = {}
            for owner in set(o for o in tree.owner if o):
                nodes = tree.owned_by(owner)
                if owner == self.name:
                    own = split_directions(bins, self.thresholds, self.edges, [(t, nd) for nd in nodes])
                    own[own_missing] = np.array([tree.default_left[nd] for nd in nodes])
                    decisions[owner] = own
                else:
                    b, cols, miss = partner_bits[owner]
                    m = np.stack([b[:, cols[(t, nd)]].astype(bool) for nd in nodes], axis=1)
                    default = np.array([tree.default_left[nd] for nd in nodes])
                    m[miss] = default
                    decisions[owner] = m
            raw += tree.predict(decisions, n)
            per_tree.append(decisions)
        pd = 1.0 / (1.0 + np.exp(-raw))
        if not applicants:
            y = self._y_full[rows] if self._y_full is not None else None
            if y is None:
                raise ValueError(f"party {self.name!r} has no labels to evaluate with")
            try:
                metrics = {"n": n, "auc": roc_auc(y, pd), "ks": ks_statistic(y, pd), "brier": brier_score(y, pd),
                           "curves": score_bands(y, pd)}  # ROC and calibration from fixed PD bands
            except Exception as exc:  # its text may name a class: it stays in the bank's local log
                log.warning("party %s: held-out metrics failed: %s (local log only)", self.name, exc)
                raise ValueError(f"party {self.name!r}: the held-out metrics could not be computed (details in "
                                 "this party's local log)") from None
            return msg.reply("vgb.metrics", meta=metrics)
        points = ScoreCard().points(pd)
        out = []
        for i, applicant in enumerate(applicants):
            contrib: dict[str, float] = {}
            for t, tree in enumerate(model.trees):
                for node, owner, delta in tree.path_contributions(per_tree[t], i):
                    key = (self.feature_names[self.thresholds[(t, node)][0]] if owner == self.name
                           else "partner data")
                    contrib[key] = contrib.get(key, 0.0) + delta
            reasons = sorted(({"source": "bank" if k != "partner data" else "partners (aggregated)", "feature": k,
                               "logit_contribution": float(v)} for k, v in contrib.items()),
                             key=lambda r: -float(r["logit_contribution"]))
            out.append({"applicant": applicant, "probability_of_default": float(pd[i]), "score": float(points[i]),
                        "logit": float(raw[i]), "missing_at": [p for p in partners if partner_bits[p][2][i]],
                        "reasons": reasons[:5], "seconds": time.perf_counter() - started,
                        "unknown_at_bank": bool(own_missing[i])})
        self.results[str(msg.meta["request_id"])] = out
        return msg.reply("vgb.scored", meta={"n": len(out)})

    def decisions_for(self, X_raw: np.ndarray, nodes: list[tuple[int, int]]) -> np.ndarray:
        """Directions at this party's nodes (tree, node) for raw feature rows — used by joint scoring."""
        return split_directions(apply_bins(X_raw, self.edges, missing=True), self.thresholds, self.edges, nodes)


def split_directions(bins: np.ndarray, thresholds: Mapping[tuple[int, int], tuple[int, int, bool]],
                     edges: list[np.ndarray], keys: list[tuple[int, int]], *,
                     rows: np.ndarray | None = None) -> np.ndarray:
    """Left (True) or right at each of the party's split nodes `keys` (tree, node), for binned rows (`rows` of
    `bins`, all by default: only the split features' columns are gathered): a value by its bin, a missing value
    (its feature's missing bin) by the split's learned direction."""
    n = len(bins) if rows is None else len(rows)
    cols = [goes_left(bins[:, f] if rows is None else bins[rows, f], b, m, len(edges[f]) + 1)
            for f, b, m in (thresholds[k] for k in keys)]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=bool)
