"""Secure vertical LR, a party's state and checks: the training state, the audits of the dealer, the batch rules.

Why apart: every step of the protocol (`secure_lr_batch`, `secure_lr_party`) reads this state and
runs these checks before it opens anything; keeping them in one place keeps the refusals consistent.

What each role learns: exactly what `sampan.vertical.secure_lr` states (its module docstring and `reveals`); this
module only implements part of a party's side of that protocol and opens nothing beyond it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sampan.crypto.channel import SealedChannels, prg_uint64
from sampan.crypto.dealer import DealerStream
from sampan.vertical.lr_runs import LRRuns
from sampan.vertical.model import LocalLinearPart, LocalScaler
from sampan.vertical.secure_lr import (
    FEATURE_BITS,
    MIN_BATCH_ROWS,
    POLY,
    TRUNC_SHIFT,
    Z_SHIFT,
    BatchRuleError,
    Roles,
    weight_triples,
)


class RowPass:
    """The rows used so far in one pass (an epoch's training batches, or one validation pass).

    Why a count beside the mask: every batch asks "any used?", "all used?" and "how many left?"; counting the
    n-row mask each time made a batch's check O(n) and an epoch O(n^2 / batch) (issue 15: 42% of the holders'
    epoch CPU at 4M rows, py-spy). With the count kept, a batch's check is O(batch); only a completed pass clears
    the mask (O(n)).
    """

    def __init__(self, n: int) -> None:
        self.used = np.zeros(n, dtype=bool)
        self.count = 0

    def __len__(self) -> int:
        return len(self.used)

    def any(self) -> bool:
        return self.count > 0

    def all(self) -> bool:
        return self.count == len(self.used)

    def clear(self) -> None:
        self.used[:] = False
        self.count = 0


@dataclass
class _TrainState:
    roles: Roles
    instance: str                     # this protocol instance's nonce: part of every pairwise PRG label
    run_id: str = field(default="", init=False)
    setup_instance: str = field(default="", init=False)  # the coordinator's nonce: E chunks are bound to it
    dealer: DealerStream
    # Standardised rows (aligned order) at 2^-FEATURE_BITS, held once as int32 (|x| <= 8 x 2^16 fits) and
    # widened to ring elements per batch (`fixed_rows`); the bank's last column is the intercept's ones.
    X_int: np.ndarray
    Xv_int: np.ndarray                # the validation rows, the same way (in secret position order after setup)
    y: np.ndarray | None              # bank only
    y_val: np.ndarray | None
    weights: np.ndarray               # the bank's last weight is its intercept
    l2_mask: np.ndarray               # no L2 penalty on the intercept
    lr: float
    l2: float
    logit_clip: float
    y_fixed: np.ndarray | None = None     # the label at 2^-47, as subtracted from sigma~(z)
    y_val_fixed: np.ndarray | None = None
    E: dict[str, np.ndarray] = field(default_factory=dict)  # masked matrices of the parties I serve
    min_rows: int = MIN_BATCH_ROWS
    used: RowPass | None = None       # holders: training rows already in a batch this epoch
    val_used: RowPass | None = None   # holders: validation rows already in this validation pass
    epochs_done: int = 0              # holders: completed training epochs (partitions of the training rows)
    opened_at: int = 0                # holders: epochs_done when the validation score was last opened
    nonce: bytes = b""                # holders: this holder's own contribution to the instance nonce
    shared: bool = False              # weights kept as additive shares (nobody sees a plaintext gradient)
    X_float: np.ndarray | None = None      # plaintext-gradient mode only: float rows for its clipped partial logit
    Xv_float: np.ndarray | None = None
    e_next: dict[str, int] = field(default_factory=dict)  # holders: next row of each party's streamed E chunks
    w_own: np.ndarray | None = None   # shared weights: this party's share of its own weights, at 2^-WEIGHT_BITS
    co_w: dict[str, np.ndarray] = field(default_factory=dict)     # co-holder: its share of each owner's weights
    E_val: dict[str, np.ndarray] = field(default_factory=dict)    # co-holder: masked validation features of owners
    ev_next: dict[str, int] = field(default_factory=dict)  # co-holder: next row of each owner's streamed Ev chunks
    val_ordered: bool = False         # the validation rows are in their secret position order (Ev may stream)
    g_co: dict[str, np.ndarray] = field(default_factory=dict)     # co-holder: its gradient share per owner
    w_trunc: dict[str, tuple[np.ndarray, list[np.ndarray], int]] = field(default_factory=dict)
    w_audit: dict[str, np.ndarray] = field(default_factory=dict)  # co-holder: its halves of owners' sacrificed triples
    best_shared: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
    weights_opened: bool = False      # shared weights: the final weights went to their owners; no more training
    rows: np.ndarray | None = None    # current batch rows
    t: int = 0
    last_t: int = -1                  # batch indices strictly increase within an instance
    val: bool = False
    share_z: np.ndarray | None = None
    delta_half: np.ndarray | None = None
    c_half: np.ndarray | None = None
    r_share: np.ndarray | None = None
    val_sum: np.ndarray | None = None  # holders: running share of the epoch's validation sum of squares
    pending: tuple[np.ndarray, int] | None = None   # (rows, t) of a batch whose gradient is in flight
    local_grad: np.ndarray | None = None
    best: np.ndarray | None = None
    dealt: dict[str, list[np.ndarray]] = field(default_factory=dict)
    audit: dict[str, np.ndarray] = field(default_factory=dict)   # this holder's halves of the sacrificed tuples
    inbox: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def fixed_rows(self, rows: np.ndarray, *, validation: bool = False) -> np.ndarray:
        """Rows of this party's features at 2^-FEATURE_BITS as ring elements (one batch, not the table)."""
        return (self.Xv_int if validation else self.X_int)[rows].astype(np.int64).view(np.uint64)

    def pad_rows(self, holder: str, rows: np.ndarray, *, validation: bool = False) -> np.ndarray:
        """Rows of U, this party's one-time pad for `holder` (the dealer regenerates the same rows).

        Random access into the seeded stream (`DealerStream.draw_rows`): the pad is never stored whole."""
        width = self.X_int.shape[1]
        return self.dealer.draw_rows(f"{'Uv' if validation else 'U'}/{holder}", rows, width)

    def pad(self, holder: str, *, validation: bool = False) -> np.ndarray:
        """The whole pad for `holder` (inspection and tests only: n x d ring elements)."""
        n = (self.Xv_int if validation else self.X_int).shape[0]
        return self.pad_rows(holder, np.arange(n), validation=validation)

    @property
    def X_fixed(self) -> np.ndarray:
        """The whole training matrix as ring elements (a copy: inspection and tests; steps use `fixed_rows`)."""
        return self.X_int.astype(np.int64).view(np.uint64)

    @property
    def X_val_fixed(self) -> np.ndarray:
        return self.Xv_int.astype(np.int64).view(np.uint64)

    @property
    def X(self) -> np.ndarray:
        """Float training rows: kept in plaintext-gradient mode, else decoded (a copy, for inspection only)."""
        return self.X_float if self.X_float is not None else self.X_int / float(1 << FEATURE_BITS)

    @property
    def X_val(self) -> np.ndarray:
        return self.Xv_float if self.Xv_float is not None else self.Xv_int / float(1 << FEATURE_BITS)


class SecureLRBase:
    """A secure-LR party's state and the checks its steps share (the handlers: `SecureLRParty`)."""

    def __init__(self, name: str, X_aligned: Callable[[], np.ndarray], y_aligned: Callable[[], np.ndarray | None],
                 feature_names: list[str], channels: Callable[[], SealedChannels], runs: LRRuns | None = None) -> None:
        self.name = name
        self._X_aligned, self._y_aligned = X_aligned, y_aligned
        self.feature_names = feature_names
        self._channels = channels
        self.state: _TrainState | None = None
        self.part: LocalLinearPart | None = None
        self.scaler: LocalScaler | None = None
        # per run: instances joined (capped), nonces and seeds seen, a failed audit (sticky); persisted if deployed
        self.runs = runs or LRRuns(name)

    # --- helpers -------------------------------------------------------------------------------
    def _st(self) -> _TrainState:
        if self.state is None:
            raise ValueError(f"party {self.name!r}: secure LR is not set up (vlr.setup first)")
        return self.state

    def _training(self) -> _TrainState:
        """The state, for a step that moves or uses the weights: refused once the shared weights were opened."""
        st = self._st()
        if st.weights_opened:
            raise ValueError(f"party {self.name!r}: the shared weights were opened to their owners; this secure LR "
                             "instance takes no further steps")
        return st

    def _holder(self) -> int:
        roles = self._st().roles
        if self.name == roles.bank:
            return 0
        if self.name == roles.helper:
            return 1
        raise ValueError(f"party {self.name!r} holds no share of the residual")

    def _other_holder(self) -> str:
        roles = self._st().roles
        return roles.helper if self.name == roles.bank else roles.bank


    # --- checks --------------------------------------------------------------------------------
    def _check_batch(self, rows: np.ndarray) -> None:
        """Holders: a training batch has enough distinct rows and the batches of an epoch partition the rows."""
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if st.val_used.any():
            raise BatchRuleError(f"party {self.name!r}: refusing a training batch in the middle of a validation pass")
        if _take_partition(self.name, "training", st.used, rows, st.min_rows):
            st.epochs_done += 1

    def _check_val_batch(self, rows: np.ndarray) -> None:
        """Holders: validation batches follow the training batches' rules and one pass follows each epoch.

        A pass starts only after a complete training epoch that followed the last opened score, so the
        coordinator gets at most one validation score per training epoch and none before the first.
        """
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if not st.val_used.any() and (st.used.any() or st.epochs_done <= st.opened_at):
            raise BatchRuleError(f"party {self.name!r}: refusing a validation pass that does not follow a complete "
                                 "training epoch (one validation score per training epoch, none before the first)")
        _take_partition(self.name, "validation", st.val_used, rows, st.min_rows)


    def _audit_split(self, n_dealt: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Which dealt rows this batch uses and which it sacrifices, from the holders' pairwise PRG.

        The dealer deals before it could know the choice (it cannot draw the holders' pairwise stream), so
        a tuple it corrupts is opened and checked with probability audit_count(n) / n_dealt.
        """
        st = self._st()
        draw = self._channels().prg(self._other_holder(), f"vlr/{st.instance}/audit/{t}", n_dealt)
        order = np.argsort(draw, kind="stable")
        n_audit = n_dealt - len(st.rows)  # type: ignore[arg-type]
        return np.sort(order[n_audit:]), np.sort(order[:n_audit])

    def _check_audit(self, bank_a: np.ndarray, bank_t: np.ndarray, bank_tz: np.ndarray | None = None) -> None:
        """Helper: the sacrificed tuples must be powers a, a^2, ..., a^5 and truncation triples (t, t >> s, msb t)."""
        st = self._st()
        a = st.audit["a"] + bank_a
        tr = st.audit["trunc"] + bank_t
        power, ok = a[0].copy(), True
        for k in range(1, POLY.degree):
            power = power * a[0]
            ok &= bool(np.array_equal(a[k], power))
        ok &= bool(np.array_equal(tr[1], tr[0] >> np.uint64(TRUNC_SHIFT)))
        ok &= bool(np.array_equal(tr[2], tr[0] >> np.uint64(63)))
        if st.shared:
            assert bank_tz is not None
            tz = st.audit["ztrunc"] + bank_tz
            ok &= bool(np.array_equal(tz[1], tz[0] >> np.uint64(Z_SHIFT)))
            ok &= bool(np.array_equal(tz[2], tz[0] >> np.uint64(63)))
        if not ok:
            self._audit_failed(f"the dealer's correlated randomness for batch {st.t} failed the audit of sacrificed "
                               "tuples (inconsistent powers or truncation pairs)")

    def _audit_failed(self, why: str) -> None:
        """A failed audit is sticky: recorded (persisted when deployed) and logged, and every later secure-LR
        step or instance of the run is refused by this party."""
        st = self._st()
        self.runs.fail(st.run_id, why)
        self.state = None
        raise ValueError(f"party {self.name!r}: {why}: refusing to continue (and every later secure LR of this run)")

    def _weight_audit_split(self, owner: str, t: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Which of the d + k dealt update triples of `owner` serves which weight and which k are sacrificed.

        Drawn from the pairwise PRG of the owner and its co-holder, which the dealer cannot compute: it can
        neither aim a corrupted triple at one weight (the intercept) nor know which triples are checked.
        """
        st = self._st()
        partner = st.roles.co_holder(owner) if owner == self.name else owner
        n = weight_triples(d)
        order = np.argsort(self._channels().prg(partner, f"vlr/{st.instance}/waudit/{owner}/{t}", n), kind="stable")
        return order[n - d:], np.sort(order[:n - d])


    def _refuse_unmasked(self, opened: np.ndarray, bound: int, what: str, *, per_row: bool) -> None:
        """A dealer mask of zero would open the value itself: refuse openings that small.

        per_row: any one opening inside +-bound is refused (for delta, bound 2^12, a uniform mask lands
        there with probability 2^-51); otherwise only a batch of 4+ rows all inside it (for c, whose
        band is wider: 2^-13 per row).
        """
        small = np.abs(opened.astype(np.float64)) < bound
        if (per_row and bool(small.any())) or (len(opened) >= 4 and bool(small.all())):
            raise ValueError(f"party {self.name!r}: the opened {what} is not masked (degenerate dealer randomness)")


    def _require_epoch_boundary(self, what: str) -> None:
        """Holders, shared weights: at least one complete training epoch, none half done, no update pending."""
        st = self._st()
        assert st.used is not None and st.val_used is not None
        if st.epochs_done < 1 or st.used.any() or st.val_used.any() or st.pending is not None or st.w_trunc:
            raise ValueError(f"party {self.name!r}: refusing to {what} before a complete training epoch or with an "
                             "update pending (weights between steps give a party its plaintext gradient)")



def validation_order(instance: str, n: int) -> np.ndarray:
    """The secret order of the validation rows for one instance (position -> row), the same at every party."""
    key = hashlib.sha256(f"sampan/vlr/val-order|{instance}".encode()).digest()
    return np.argsort(prg_uint64(key, "order", n), kind="stable")


def _take_partition(me: str, what: str, used: RowPass, rows: np.ndarray, min_rows: int) -> bool:
    """Mark `rows` used in a pass over `used`; refuse small, unknown, repeated or re-used rows and a tail
    shorter than `min_rows`. Returns True when the batch completes the pass (and starts a new one).

    O(batch) per call (`RowPass` keeps the count): the same refusals, in the same order, as counting the mask."""
    n = len(used)
    if len(rows) < min_rows:
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch of {len(rows)} rows (at least "
                             f"{min_rows}: fewer rows let a party solve for the residual)")
    if rows.min() < 0 or rows.max() >= n:
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch with unknown rows")
    if used.used[rows].any():
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch that re-uses rows of this pass")
    used.used[rows] = True
    distinct = int(np.count_nonzero(np.diff(np.sort(rows)))) + 1  # rows newly marked (none was used before)
    used.count += distinct
    if distinct != len(rows):
        raise BatchRuleError(f"party {me!r}: refusing a {what} batch with repeated rows")
    if used.all():
        if what == "training":
            used.clear()
        return True
    if n - used.count < min_rows:
        raise BatchRuleError(f"party {me!r}: this batch leaves {n - used.count} rows of the {what} pass, "
                             f"fewer than {min_rows} (merge the tail into the last batch)")
    return False


def _with_ones(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _l2_mask(n: int, has_intercept: bool) -> np.ndarray:
    mask = np.ones(n)
    if has_intercept:
        mask[-1] = 0.0
    return mask
