"""Horizontal GBDT under DP, at the bank: its per-node gradient/hessian histograms through a Gaussian mechanism.

The tree handlers (`sampan.horizontal.gbdt.HorizontalGBDTParty`) compute exact, clipped sums only; this mod sits
between them and the transport and decides what leaves: with ``dp`` in a request, one Gaussian release per
request, charged to the bank's own ledger (`PartyPrivacyPolicy.admit_histograms`, persisted) before the reply
leaves; without ``dp`` in a job that announced DP (or under a policy that requires DP, or once the run had a DP
release) the request is refused.

Sensitivity (add/remove one training row of this bank, logistic loss). A row's gradient is g = w·(p − y) and
its hessian h = w·p(1 − p) with p in (0, 1) and example weight w ≤ c: so |g| ≤ c and 0 ≤ h ≤ c/4. The
handler clips g to [−c_g, c_g] and h to [0, c_h] anyway (``clip`` = [c_g, c_h], chosen by the coordinator,
public), so the bound holds whatever the weights. A histogram request covers nodes of one tree level; the
bank routes each of its rows to exactly ONE node, so a row falls in one node of the request, and there in
one bin per feature (a missing value has its own bin, still one per feature). The release is the vector
[G/c_g, H/c_h] over the requested nodes: one row moves d entries of G/c_g by at most 1 and d entries of
H/c_h by at most 1, so its L2 sensitivity is sqrt(2d) (sqrt(2) for a ``totals`` request: one G and one H per
node; sqrt(2k) when the request names k ``features`` of a tree's subset: the handler leaves the other
features' bins at 0). Gaussian noise N(0, (z·sqrt(2d))²) per entry, then scaled back: the noise std on G is
z·sqrt(2d)·c_g and on H z·sqrt(2d)·c_h. The setup counts [n, positives] move by at most 1 each: sensitivity sqrt(2).

What the bank enforces itself (a curious coordinator cannot get more):
- each request is one release, charged at the noise multiplier it carries (>= the policy's minimum);
- nodes of a request are distinct, and a node of a tree is released once (a repeat is refused: fresh noise on
  the same sums would average it away); a node with one row is answered like any other (the noise covers
  it; refusing would reveal that the node is small);
- with the job's tree shape (``gbdt`` in the job: n_trees, max_depth) at most n_trees trees and at most
  max_depth + 1 releases per tree; without it every release is still charged, and the budget bounds them;
- under DP no validation loss leaves (`hgb.leaves` carries zeros): early stopping is off;
- the release is finite by construction: the handler zeroes a row whose gradient or hessian is not finite before
  clipping, and refuses non-finite setup numbers and leaf values and any split or leaf vector that does not match
  the tree's public shape before it reads a row (`sampan.horizontal.gbdt_checks`, reviews R13-HGB-1/5), so no
  reply (NaN, error or not) depends on which nodes or bins hold rows;
- a release its own budget cannot pay is refused as `BankBudgetRefused`: the coordinator keeps the finished trees;
- a job announced with DP is a DP run from its first message, so its one evaluation follows the DP rules
  (`sampan.privacy.admission`: one model, exactly 100 bins) even if asked for before any tree release.
What the coordinator learns: the noised histograms and counts, nothing else computed from the rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sampan.core.party import Handler, Mod
from sampan.privacy.admission import PartyDPState, _with_meta
from sampan.privacy.ledger import BudgetExceeded
from sampan.privacy.mechanisms import GaussianMechanism
from sampan.privacy.party_policy import PolicyRefused
from sampan.wire import Message

__all__ = ["BANK_BUDGET_REFUSAL", "COUNTS_SENSITIVITY", "GBDT_PROTOCOL", "BankBudgetRefused", "gbdt_dp_mod",
           "hist_sensitivity"]

GBDT_PROTOCOL = "HGBDT"  # the policy's protocol name (a policy listing it requires noise on every release)
COUNTS_SENSITIVITY = math.sqrt(2.0)  # [n, positives] under add/remove one row


class BankBudgetRefused(PolicyRefused):
    """The bank's own budget (one ledger for all its runs) cannot pay this release: the coordinator stops adding
    trees and keeps those before (review R13-HGB-2), rather than failing the run."""


BANK_BUDGET_REFUSAL = BankBudgetRefused.__name__  # the error type a coordinator sees in the refusal reply


def hist_sensitivity(features: int) -> float:
    """L2 sensitivity of one scaled [G/c_g, H/c_h] release over `features` features per node (1: totals)."""
    return math.sqrt(2.0 * max(int(features), 1))


@dataclass
class _RunTrees:
    """What one run has released so far (never sent anywhere)."""

    trees: int = 0
    waves: int = 0
    released: set[int] = field(default_factory=set)


def _positive(party: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PolicyRefused(f"party {party!r} refuses gbdt dp.{name}={value!r}: a positive finite number is needed")
    return float(value)


def gbdt_dp_mod(state: PartyDPState, features: int, *, shape: Mapping[str, Any] | None = None,
                announced: bool = False) -> Mod:
    """The bank's DP around its `hgb.*` handlers (see the module docstring). ``features``: its feature count (one
    bin of each per row); ``shape``: the job's n_trees and max_depth (None: unbounded, every release charged);
    ``announced``: the job announced DP for its trees."""
    runs: dict[str, _RunTrees] = {}

    def required(msg: Message) -> bool:
        return announced or state.under_dp(msg.run_id)

    def mod(msg: Message, inner: Handler) -> Message:
        if announced:  # a DP job is a DP run from its first message: evaluation rules too (one model, 100 bins)
            with state.lock:
                state.dp_runs.add(msg.run_id)
        if msg.kind == "describe" and "dp_count" not in msg.meta and required(msg):
            raise PolicyRefused(f"party {state.name!r} refuses 'describe' without dp_count: the job announced DP on "
                                "its trees (the exact row count and positive rate would leave uncharged)")
        if not msg.kind.startswith("hgb."):
            return inner(msg)
        dp = msg.meta.get("dp")
        if msg.kind == "hgb.leaves":
            reply = inner(msg)
            return msg.reply("hgb.leaves", meta={"n_val": 0, "val_loss": 0.0}) if required(msg) else reply
        if msg.kind not in ("hgb.sketch", "hgb.hist"):
            return inner(msg)
        if not isinstance(dp, Mapping):
            if required(msg):
                raise PolicyRefused(f"party {state.name!r} refuses {msg.kind!r} without dp: the job announced DP on "
                                    "its tree histograms, or this run already released under DP")
            return inner(msg)
        z = _positive(state.name, "noise_multiplier", dp.get("noise_multiplier"))
        with state.lock:
            run = runs.setdefault(msg.run_id, _RunTrees())
            if msg.kind == "hgb.sketch":
                return _counts(state, msg, inner, z)
            return _histograms(state, run, shape, features, msg, inner, z, dp)

    return mod


def _counts(state: PartyDPState, msg: Message, inner: Handler, z: float) -> Message:
    """[row count, positives] through one Gaussian release (no quantiles: edges come from public bounds)."""
    _charge(state, msg, "counts", z, COUNTS_SENSITIVITY, "party-side: horizontal GBDT row and positive counts")
    exact = inner(_with_meta(msg, {"counts_only": True}))
    vector = np.array([float(exact.meta["n"]), float(exact.meta["events"])])
    noised = np.asarray(GaussianMechanism(COUNTS_SENSITIVITY, z * COUNTS_SENSITIVITY).release(vector))
    return msg.reply("hgb.sketch", meta={"n": float(noised[0]), "events": float(noised[1]), "dp": True})


def _histograms(state: PartyDPState, run: _RunTrees, shape: Mapping[str, Any] | None, width: int, msg: Message,
                inner: Handler, z: float, dp: Mapping[str, Any]) -> Message:
    """One level's node histograms through one Gaussian release, after the checks and the charge."""
    clip = dp.get("clip")
    if not isinstance(clip, (list, tuple)) or len(clip) != 2:
        raise PolicyRefused(f"party {state.name!r} refuses gbdt dp.clip={clip!r}: expected [c_g, c_h]")
    c_g, c_h = (_positive(state.name, "clip", c) for c in clip)
    nodes = [int(n) for n in np.asarray(msg.arrays.get("nodes", []), dtype=np.int64).ravel().tolist()]
    new_tree = bool(msg.meta.get("new_tree"))
    if not nodes or len(set(nodes)) != len(nodes):
        raise PolicyRefused(f"party {state.name!r} refuses a histogram request with nodes {nodes}: each node once")
    trees, waves = (run.trees + 1, 1) if new_tree else (run.trees, run.waves + 1)
    if trees == 0:
        raise PolicyRefused(f"party {state.name!r} refuses histograms before a tree started (new_tree)")
    if shape is not None and trees > int(shape["n_trees"]):
        raise PolicyRefused(f"party {state.name!r} refuses tree {trees}: the job it accepted grows "
                            f"{shape['n_trees']} trees")
    if shape is not None and waves > int(shape["max_depth"]) + 1:
        raise PolicyRefused(f"party {state.name!r} refuses a histogram release {waves} in tree {trees}: the job's "
                            f"depth {shape['max_depth']} allows {int(shape['max_depth']) + 1} per tree")
    released = set() if new_tree else run.released
    again = sorted(set(nodes) & released)
    if again:
        raise PolicyRefused(f"party {state.name!r} refuses nodes {again}: already released in this tree (fresh "
                            "noise on the same sums would average it away)")
    totals = bool(dp.get("totals"))
    features = _features(state.name, dp.get("features"), width)
    sensitivity = hist_sensitivity(1 if totals else len(features) if features is not None else width)
    _charge(state, msg, f"tree {trees} release {waves}", z, sensitivity,
            f"party-side: horizontal GBDT histograms, tree {trees} release {waves}")
    run.trees, run.waves, run.released = trees, waves, released | set(nodes)
    state.dp_runs.add(msg.run_id)
    meta = {k: v for k, v in msg.meta.items() if k != "dp"}
    exact = inner(_with_meta(msg, {**meta, "clip": [c_g, c_h], "totals": totals, "features": features}))
    keys = [(f"G:{n}", f"H:{n}") for n in nodes]
    scaled = np.concatenate([np.concatenate([np.asarray(exact.arrays[g]) / c_g, np.asarray(exact.arrays[h]) / c_h])
                             for g, h in keys])
    # finite by construction (the handler zeroes a non-finite row's g and h before clipping, review R13-HGB-1);
    # kept so that no NaN can mark an occupied bin whatever the handler does
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)
    noised = np.asarray(GaussianMechanism(sensitivity, z * sensitivity).release(scaled))
    out, at = {}, 0
    for g, h in keys:
        width = len(exact.arrays[g])
        out[g] = noised[at:at + width] * c_g
        out[h] = noised[at + width:at + 2 * width] * c_h
        at += 2 * width
    return msg.reply("hgb.hist", out, {"dp": True})


def _features(party: str, value: Any, width: int) -> list[int] | None:
    """A tree's feature subset (distinct feature indices): only their bins carry data, so the release's
    sensitivity is sqrt(2k) for k of them."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or any(
            isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < width for j in value) or len(
            set(value)) != len(value):
        raise PolicyRefused(f"party {party!r} refuses gbdt dp.features={value!r}: distinct feature indices below "
                            f"{width} are needed")
    return sorted(int(j) for j in value)


def _charge(state: PartyDPState, msg: Message, release: str, z: float, sensitivity: float, note: str) -> None:
    """Check the noise against the party's minimum and charge its own ledger before anything is computed."""
    try:
        state.policy.admit_histograms(state.name, GBDT_PROTOCOL, instance=msg.run_id, release=release,
                                      sigma=z * sensitivity, sensitivity2=sensitivity**2, note=note)
    except PolicyRefused as exc:
        if isinstance(exc.__context__, BudgetExceeded):  # its own budget, not a rule: a budget stop
            raise BankBudgetRefused(str(exc)) from None
        raise
