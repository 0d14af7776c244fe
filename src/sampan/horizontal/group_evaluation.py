"""Fairness by group (issue 13 item 8): per-group score histograms computed where the data lives.

After the run's final evaluation the coordinator sends one `evaluate_groups` request: the released model, and
for each declared group column its public levels (a category column's one-hot columns from [schema]; a numeric
column's bands from `[evaluation] group_bands` cut points). Each party scores its own holdout rows and replies
with, per level, the label counts per score bin (`GROUP_BINS` = `DP_BINS` bins). The coordinator adds them, and
reads AUC, bad rate and approval rate at the run's decision threshold per group (`sampan.metrics.groups`),
suppressing groups under ``min_group_count`` pooled rows, plus a max/min approval-rate disparity per column.

What each role learns, and how the party enforces it (`sampan.privacy.group_release_mod`): without DP, the
exact counts per level and bin of its holdout (listed as revealed in the receipt), except that the party zeroes
and names every level it holds fewer than `MIN_CELL_ROWS` rows of, and per column more levels until the rows
derivable from its evaluation minus what it shows are 0 or at least `MIN_CELL_ROWS` (secondary suppression);
under DP, the counts through one Gaussian mechanism (L2 sensitivity sqrt(columns): a row falls in at most one
level per column), charged write-ahead to the run ledger and the party's own ledger, and no suppression (a
data-dependent choice would leak). Once per run (kept in its state dir; an identical repeat gets the same
answer), and only on a model the party evaluated in this run. The party checks every spec against its own
columns (`check_specs`): each group column once, a category's levels exactly its one-hot columns, a numeric
column's bands on that column. Not under secure aggregation (refused by configuration: the sum would need its
own SecAgg instance). Holdout rows only; the group columns must be [schema] features of the model (category or
numeric). A deployed bank answers only the specs its job announced (`sampan.deploy.allow_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sampan.core.party import PartyApp
from sampan.horizontal.party_rows import block_scores
from sampan.metrics import ScoreHistogram
from sampan.metrics.groups import disparity, group_table
from sampan.metrics.histogram import DP_BINS
from sampan.privacy.group_release_mod import MIN_CELL_ROWS, group_release_mod
from sampan.privacy.ledger import BudgetExceeded, PrivacyEvent
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.horizontal.party import HorizontalParty
    from sampan.horizontal.run_state import RunState
    from sampan.horizontal.workflow import HorizontalWorkflow

__all__ = ["EVALUATE_GROUPS", "GROUP_BINS", "MAX_LEVELS", "evaluate_groups", "group_counts", "group_specs",
           "mount_groups"]

EVALUATE_GROUPS = "evaluate_groups"
GROUP_BINS = DP_BINS
MAX_LEVELS = 64  # levels over all columns of one request
DEFAULT_MIN_GROUP = 30
NOTE = "group evaluation histograms"


def _band_names(cuts: Sequence[float]) -> list[str]:
    inner = [f"[{a:g}, {b:g})" for a, b in zip(cuts, cuts[1:], strict=False)]
    return [f"< {cuts[0]:g}", *inner, f">= {cuts[-1]:g}"]


def group_specs(section: Any, feature_names: Sequence[str]) -> list[dict[str, Any]]:
    """The public request: per group column, its one-hot columns (category) or cut points (numeric band)."""
    specs: list[dict[str, Any]] = []
    for column in section.groups or []:
        bands = (section.group_bands or {}).get(column)
        if bands is not None:
            specs.append({"column": column, "feature": column, "cuts": [float(c) for c in bands]})
            continue
        onehot = [name for name in feature_names if name.startswith(f"{column}=")]
        if not onehot:
            raise ValueError(f"evaluation.groups: {column!r} is neither a category feature nor in group_bands")
        specs.append({"column": column, "levels": onehot})
    return specs


def _levels(spec: Mapping[str, Any]) -> list[str]:
    if "cuts" in spec:
        return _band_names(spec["cuts"])
    return [name.split("=", 1)[1] for name in spec["levels"]]


def _members(X: np.ndarray, names: Sequence[str], spec: Mapping[str, Any]) -> np.ndarray:
    """(levels, rows) membership from the party's raw (unscaled) columns; a missing value joins no level, and a
    row joins at most one level of a spec by construction (the first), whatever its columns hold (the DP charge
    counts one level per column: review R13-GRP-2)."""
    index = {name: i for i, name in enumerate(names)}
    if "cuts" in spec:
        x = X[:, index[spec["feature"]]]
        band = np.searchsorted(np.asarray(spec["cuts"], dtype=float), x, side="right")
        return np.stack([(band == k) & ~np.isnan(x) for k in range(len(spec["cuts"]) + 1)])
    onehot = np.stack([X[:, index[name]] == 1.0 for name in spec["levels"]])
    return onehot & (np.cumsum(onehot, axis=0) == 1)


def category_columns(names: Sequence[str]) -> dict[str, list[str]]:
    """Each category column's one-hot model columns (``column=category``, in order) among a party's names."""
    columns: dict[str, list[str]] = {}
    for name in names:
        if "=" in name:
            columns.setdefault(name.split("=", 1)[0], []).append(name)
    return columns


def _spec_levels(spec: Any, names: Sequence[str], categories: Mapping[str, list[str]]) -> int:
    """The number of levels of one well-formed spec; 0 if it is not: a numeric band of one numeric column (named
    as its column, 1 to 20 finite increasing cut points), or exactly the one-hot columns of one category."""
    if not isinstance(spec, Mapping):
        return 0
    column = spec.get("column")
    if "cuts" in spec:
        cuts = spec["cuts"]
        ok = (set(spec) == {"column", "feature", "cuts"} and column == spec["feature"] and column in names
              and isinstance(column, str) and "=" not in column and isinstance(cuts, list) and 1 <= len(cuts) <= 20
              and all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in cuts)
              and all(b > a for a, b in zip(cuts, cuts[1:], strict=False)))
        return len(cuts) + 1 if ok else 0
    levels = spec.get("levels")
    ok = set(spec) == {"column", "levels"} and isinstance(column, str) and levels == categories.get(column)
    return len(levels) if ok and isinstance(levels, list) else 0


def check_specs(specs: Any, names: Sequence[str], party: str) -> list[int]:
    """A party's check of the request alone (never of its rows), returning each group column's level count: 1 to
    8 group columns, each at most once; a category column's levels exactly its one-hot columns, a numeric
    column's bands on that column only (review R13-GRP-1/2: two bandings of one column, or one "column" mixing
    the one-hot columns of two categories, are refused); at most `MAX_LEVELS` levels in all."""
    if not isinstance(specs, list) or not specs or len(specs) > 8:
        raise ValueError(f"party {party!r} refuses groups={specs!r}: 1 to 8 group columns")
    categories = category_columns(names)
    widths = [_spec_levels(spec, names, categories) for spec in specs]
    for spec, width in zip(specs, widths, strict=True):
        if not width:
            raise ValueError(f"party {party!r} refuses group spec {spec!r}: unknown columns or bad cut points (a "
                             "category's levels must be exactly its one-hot columns, a band's cut points finite and "
                             "increasing on one numeric column)")
    columns = [spec["column"] for spec in specs]
    if len(set(columns)) != len(columns):
        raise ValueError(f"party {party!r} refuses group columns {columns}: each column at most once per request")
    if sum(widths) > MAX_LEVELS:
        raise ValueError(f"party {party!r} refuses {sum(widths)} group levels: at most {MAX_LEVELS}")
    return widths


def group_counts(X: np.ndarray, names: Sequence[str], y: np.ndarray, p: np.ndarray, specs: Sequence[Mapping[str, Any]],
                 bins: int = GROUP_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(levels, bins) positive and negative counts over every spec's levels, in order."""
    pos, neg = [], []
    for spec in specs:
        for member in _members(X, names, spec):
            h = ScoreHistogram.from_scores(y[member], p[member], bins) if member.any() else ScoreHistogram.empty(bins)
            pos.append(h.pos)
            neg.append(h.neg)
    return np.array(pos, dtype=np.float64).reshape(-1, bins), np.array(neg, dtype=np.float64).reshape(-1, bins)


def _handler(party: HorizontalParty) -> Any:
    def handle(msg: Message) -> Message:
        """Exact counts per group level and score bin on the holdout (privacy: `group_release_mod`)."""
        data = party.test_data
        names = list(data.feature_names)
        _request_check(party)(msg)
        if not len(data):
            raise ValueError(f"party {party.name!r} has no holdout rows to evaluate groups on")
        assert data.y is not None
        # scored per row block, as `evaluate` does: only the scores vector is whole (review R15-HLR-2: the whole
        # holdout used to be standardised into one float64 matrix first)
        rows = party._scaled.rows("test", data.X, msg.arrays)
        p = block_scores(rows, party._model(msg.meta["model"]), msg.arrays["params"])
        pos, neg = group_counts(data.X, names, data.y, p, msg.meta["groups"])
        return msg.reply("group_evaluation", arrays={"pos": pos, "neg": neg}, meta={})
    return handle


def _request_check(party: HorizontalParty) -> Callable[[Message], list[int]]:
    names = list(party.test_data.feature_names)

    def check(msg: Message) -> list[int]:
        if msg.meta.get("bins") != GROUP_BINS:
            raise ValueError(f"party {party.name!r} refuses group bins={msg.meta.get('bins')!r}: exactly {GROUP_BINS}")
        return check_specs(msg.meta.get("groups"), names, party.name)
    return check


def mount_groups(app: PartyApp, party: HorizontalParty) -> None:
    """Register `evaluate_groups` with its privacy mod (once per run; DP noise or small-cell suppression), which
    checks the request against the party's own columns before anything is charged or computed."""
    app.register(EVALUATE_GROUPS, _handler(party))
    app.mods.append(group_release_mod(party.dp, _request_check(party), EVALUATE_GROUPS))


def evaluate_groups(workflow: HorizontalWorkflow, state: RunState, threshold: float) -> dict[str, Any]:
    """The coordinator's step: charge under DP (write-ahead), one exchange, pooled per-group metrics."""
    section = workflow.config.evaluation
    assert section is not None
    specs = group_specs(section, state.feature_names)
    parties, step = sorted(state.parties), state.round + 1
    meta: dict[str, Any] = {"model": state.model_config, "groups": specs, "bins": GROUP_BINS}
    privacy = workflow.config.privacy
    if privacy is not None:
        z = float(privacy.group_noise_multiplier)
        meta["group_dp"] = {"noise_multiplier": z}
        try:
            workflow.privacy.charge([PrivacyEvent(party=p, level="DP1", mechanism="gaussian", noise_multiplier=z,
                                                  step=step, note=NOTE) for p in parties])
        except BudgetExceeded as exc:
            workflow.recorder.event("groups_skipped", {"reason": str(exc)})
            return {"skipped": str(exc)}
    total_pos = total_neg = None
    withheld: set[int] = set()
    for reply in workflow._request(parties, EVALUATE_GROUPS, step, arrays={"params": state.params, **state.scaler},
                                   meta_for=lambda p: meta):
        pos, neg = np.asarray(reply.arrays["pos"], dtype=float), np.asarray(reply.arrays["neg"], dtype=float)
        total_pos = pos if total_pos is None else total_pos + pos
        total_neg = neg if total_neg is None else total_neg + neg
        withheld.update(int(row) for row in reply.meta.get("withheld") or [])
    assert total_pos is not None and total_neg is not None
    for kind, detail in workflow._take_round_events(state.round):  # the exchange's traffic, for the receipt
        workflow.recorder.event(kind, detail)
    return group_summary(specs, total_pos, total_neg, threshold,
                         int(section.min_group_count or DEFAULT_MIN_GROUP), privacy is not None, withheld)


def group_summary(specs: Sequence[Mapping[str, Any]], pos: np.ndarray, neg: np.ndarray, threshold: float,
                  min_count: int, dp: bool, withheld: set[int]) -> dict[str, Any]:
    """Pooled (noised under DP: rounded, clipped at 0) counts -> the report's rows and disparity."""
    empty = ScoreHistogram.empty(pos.shape[1])
    levels: dict[str, list[tuple[str, ScoreHistogram]]] = {}
    names: list[str] = []
    row = 0
    for spec in specs:
        for level in _levels(spec):
            names.append(f"{spec['column']} {level}")
            p, n = np.maximum(np.rint(pos[row]), 0), np.maximum(np.rint(neg[row]), 0)
            mid = (empty.edges[:-1] + empty.edges[1:]) / 2
            levels.setdefault(spec["column"], []).append((level, ScoreHistogram(empty.edges, p, n, (p + n) * mid)))
            row += 1
    rows = group_table(levels, threshold, min_count)
    note = (f"Groups with fewer than {min_count} pooled holdout rows are suppressed. " +
            ("Counts are noised at each party (DP, charged); figures are approximate." if dp else
             f"Each party withholds a group it holds fewer than {MIN_CELL_ROWS} holdout rows of; pooled figures then "
             "cover the parties that sent it." +
             (f" Withheld by some party: {', '.join(names[i] for i in sorted(withheld) if i < len(names))}."
              if withheld else "")))
    return {"threshold": threshold, "rows": [r.to_dict() for r in rows], "disparity": disparity(rows),
            "note": note, "dp": dp}
