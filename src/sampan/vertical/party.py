"""One organisation in a vertical run: its table, its keys, and the handlers of every vertical protocol.

Everything the party knows lives here and never leaves except through the handlers' replies, which
carry only sealed envelopes, sizes and aggregate metrics.

Run keys (`vertical.hello` / `vertical.peers`, in `party_keys`): each party makes a fresh X25519 key per run and signs
(run id, "vertical.channels", its role, its name, the key) with its organisation's certificate key;
before deriving any sealed channel — and so before PSI, secure LR, WOE, GBDT or scoring exchange
anything — it checks every peer's signature and certificate against the consortium CA and CRL. A
coordinator that substitutes, re-signs or replays a key is refused with an error naming the peer.
The signed role is enforced: a run needs exactly one party proved as label holder (a label holder
refuses a second), the channels keep the proved roles, and every handler that treats a named party
as "the bank" checks it against them (`SealedChannels.require_role`), not against coordinator meta.
Roles are self-asserted by each signer (certificates carry no protocol role); a deployed party's
verifier (`sampan.deploy.allow.PeerAllowList`) knows the job's label holder and admits only it in that
role (a job naming none admits no label holder), and the party joins only jobs whose label holder its
`[allow] label_holders` lists, so there a partner colluding with the coordinator cannot pose as the bank. In a
simulation such a
partner can claim to be the label holder only where the real one is absent.
Every request naming training/validation rows is checked against the dataset's test rows, and held-out
evaluation follows `sampan.vertical.rows` (one training/validation/test partition of the customers per
dataset, fixed at first use across runs, each model evaluated once, at most `max_evaluations` models). The
bank computes the sets itself (`sampan.vertical.bank_splits`: its test file, or a hash keyed with its secret
split key) and tells the coordinator positions only; a first evaluation of other rows is refused.
What each role learns from this step: every party and the coordinator learn the parties'
certificates (public within the consortium), protocol roles and per-run public keys; nothing secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sampan.core.party import PartyApp
from sampan.crypto.channel import PartyKeys, SealedChannels
from sampan.crypto.identity import IdentityVerifier, PartyIdentity
from sampan.data.table import PartyData
from sampan.privacy.party_policy import PartyPrivacyPolicy
from sampan.vertical.bank_splits import BankSplits
from sampan.vertical.gbdt import VerticalGBDTParty
from sampan.vertical.lr_runs import DEFAULT_MAX_INSTANCES, LRRuns
from sampan.vertical.model import LocalLinearPart
from sampan.vertical.party_baseline import fit_logistic, local_baseline
from sampan.vertical.party_keys import CHANNEL_PROTOCOL, PROTOCOL_ROLES, RunKeyExchange
from sampan.vertical.party_parts import PartRecords
from sampan.vertical.plain_lr import PlainVerticalLRParty
from sampan.vertical.psi_party import PsiParty
from sampan.vertical.psi_rr22_party import register_rr22
from sampan.vertical.rows import (
    DEFAULT_MAX_EVALUATIONS,
    DEFAULT_MAX_TEST_FRACTION,
    RowBook,
    RowRuleError,
    check_splits,
    per_run,
)
from sampan.vertical.scorecard_rules import apply_scorecard_rules
from sampan.vertical.scoring import ScoringParty
from sampan.vertical.secure_lr_party import SecureLRParty
from sampan.vertical.woe import VerticalWoeParty
from sampan.wire import Message

# the run-key exchange lives in `party_keys`, the bank's own baseline model in `party_baseline`; their public
# names are re-exported here, so their old import path keeps working
__all__ = ["VerticalParty", "CHANNEL_PROTOCOL", "PROTOCOL_ROLES", "fit_logistic"]

_SPLIT_SETUPS = frozenset({"vlr.setup", "vertical.local_baseline"})


class VerticalParty:
    """A bank or a partner. `data.y` is set only at the label holder.

    `identity` signs this party's run keys and `verifier` (the consortium CA) checks its peers'; both
    are required. A deployment passes the organisation's certificate and CA, a simulation one identity
    per party from the run's `simulated_consortium` (`build_inprocess_vertical`), so the same signing
    and checking runs everywhere.

    `with_baselines=True` also registers the INSECURE plaintext LR baseline (`plr.*`, which returns exact
    residuals sigmoid(z) - y for any coordinator-chosen z, i.e. every label): for benchmarks pricing the
    cryptography only, never on real data; a deployed agent never sets it.
    """

    def __init__(self, data: PartyData, *, identity: PartyIdentity, verifier: IdentityVerifier,
                 with_baselines: bool = False, policy: PartyPrivacyPolicy | None = None,
                 lr_state: str | Path | None = None, max_lr_instances: int = DEFAULT_MAX_INSTANCES,
                 rows_state: str | Path | None = None, max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
                 row_book: RowBook | None = None, registry: object = None, test_ids_file: str | Path | None = None,
                 split_key: bytes | Callable[[], bytes] | None = None,
                 max_test_fraction: float = DEFAULT_MAX_TEST_FRACTION) -> None:
        self.name = data.party
        self.data = data
        if identity is None or verifier is None:
            raise ValueError(f"party {self.name!r}: a vertical party needs its identity and the consortium verifier "
                             "(a simulation: `simulated_consortium`)")
        self.identity, self.verifier = identity, verifier
        if self.identity.name != self.name:
            raise ValueError(f"party {self.name!r}: its certificate is issued to {self.identity.name!r}")
        self.key_exchange = RunKeyExchange(self.name)  # this run's signed keys (`party_keys`)
        self.channels: SealedChannels | None = None
        # this party's own DP policy and ledger, shared by its WOE and GBDT releases (one account per run)
        self.policy = policy or PartyPrivacyPolicy()
        # the row rules (distinct rows; one training, validation and test set of customers per dataset, fixed
        # at first use across runs and persisted in `rows_state` when deployed; an evaluation cap), shared by
        # every protocol of this party (`sampan.vertical.rows`)
        self.row_book = row_book or RowBook(self.name, path=rows_state, max_evaluations=max_evaluations)
        self.run_rows = per_run(self.name, self.row_book, self._ids_of)
        self.psi = PsiParty(self.name, data.ids)
        # secure-LR instances per run (capped), seeds seen, failed audits: persisted in `lr_state` when deployed
        self.lr = SecureLRParty(self.name, self._aligned_X, self._aligned_y, list(data.feature_names), self._channels,
                                runs=LRRuns(self.name, lr_state, max_lr_instances))
        self.scoring = ScoringParty(self.name, data.ids, data.X, self._part, self._channels, self._aligned_rows,
                                    y=data.y, run_rows=self.run_rows)
        trees_X = data.trees_X if data.trees_X is not None else data.X  # NaN kept in `native` columns (issue 13)
        self.gbdt = VerticalGBDTParty(self.name, lambda: self._aligned_raw_X(trees_X), self._aligned_y,
                                      list(data.feature_names),
                                      self._channels, ids=data.ids, X_full=trees_X, aligned_rows=self._aligned_rows,
                                      y_full=data.y, policy=self.policy, run_rows=self.run_rows)
        self.woe = VerticalWoeParty(self.name, self._aligned_raw_X, self._aligned_y, list(data.feature_names),
                                    self._channels, policy=self.policy, run_rows=self.run_rows,
                                    table=self._aligned_table)
        self.use_woe = False
        self.scorecard_monotone = True  # monotone WOE bins and the sign rule (`scorecard_rules`)
        # the WOE/raw choice of the open secure-LR instance, fixed at its vlr.setup (review R12-VER-3); None: none open
        self.lr_woe: bool | None = None
        self.loaded_part: LocalLinearPart | None = None
        self.channel_run: str | None = None  # the run whose channels this party holds
        # its stages per run, finished parts, and what it releases for the report (`party_parts`)
        self.records = PartRecords(self, registry)
        # the bank's own training/validation/test customers: its test file or its keyed split (`bank_splits`)
        self.splits = BankSplits(self, key=split_key, test_ids_file=test_ids_file, max_test_fraction=max_test_fraction)
        self.app = PartyApp(self.name)
        self.app.register("vertical.hello", self.hello)
        self.app.register("vertical.peers", self.peers)
        self.app.register("vertical.splits", self.splits.handle)
        self.app.register("vertical.local_baseline", self._noting_fit_rows(self.local_baseline,
                                                                           "vertical.local_baseline"))
        self.psi.register(self.app)
        register_rr22(self.psi, self.app)  # opt-in RR22 backend; spu starts only when a run asks for it
        handlers = {**self.lr.handlers(), **self.scoring.handlers(), **self.gbdt.handlers(), **self.woe.handlers(),
                    **self.records.handlers(), "vertical.use_woe": self.set_woe, "vlr.setup": self._setup_lr,
                    "vlr.finish": self._finish_lr}
        if with_baselines:
            handlers.update(PlainVerticalLRParty(self.name, self._aligned_X, self._aligned_y).handlers())
        for kind, handler in handlers.items():
            self.app.register(kind, self._noting_fit_rows(handler, kind))

    def _noting_fit_rows(self, handler: Callable[[Message], Message], kind: str = "") -> Callable[[Message], Message]:
        """Every request naming training/validation rows: they may never be test rows. The setups of protocols
        that report aggregates over their training and validation rows (secure LR's validation score, the
        bank's baseline; GBDT binds its own) use the dataset's pinned (training, validation) customers."""
        def handle(msg: Message) -> Message:
            if kind in _SPLIT_SETUPS and "train_rows" in msg.arrays and "val_rows" in msg.arrays:
                aligned = self._aligned_rows()
                n = len(aligned if aligned is not None else [])
                train, val = check_splits(self.name, msg.arrays["train_rows"], msg.arrays["val_rows"], n)
                self.run_rows(msg.run_id).bind_splits(kind, train, val, dealer=False)
            for key in ("train_rows", "val_rows"):
                if key in msg.arrays:
                    self.run_rows(msg.run_id).note_fit(msg.arrays[key])
            return handler(msg)
        return handle

    # --- keys ---------------------------------------------------------------------------------------
    @property
    def is_label_holder(self) -> bool:
        return self.data.y is not None

    @property
    def protocol_role(self) -> str:
        return "label_holder" if self.data.y is not None else "partner"

    @property
    def keys(self) -> PartyKeys | None:
        """This run's private key between `hello` and `peers`; None before and after (it is one-shot)."""
        return self.key_exchange.keys

    def hello(self, msg: Message) -> Message:
        """A fresh key pair for this run, signed with this organisation's certificate (once per run, `party_keys`)."""
        return self.key_exchange.hello(msg, self.identity, self.protocol_role, len(self.data.feature_names))

    def peers(self, msg: Message) -> Message:
        """Sealed channels from peer keys signed by each peer's certificate for this run (one-shot, `party_keys`);
        every protocol of this party uses them from now on."""
        self.channels = self.key_exchange.channels(msg, self.verifier, self.protocol_role,
                                                   has_channels=self.channels is not None)
        self.psi.channels = self.channels
        self.channel_run = msg.run_id
        return msg.reply("vertical.ack", meta={"peers": self.channels.peers})

    def _channels(self) -> SealedChannels:
        if self.channels is None:
            raise ValueError(f"party {self.name!r}: no channels yet (vertical.hello/peers first)")
        return self.channels

    # --- data views ---------------------------------------------------------------------------------
    def _aligned_rows(self) -> np.ndarray | None:
        return self.psi.aligned_rows

    def _ids_of(self, positions: np.ndarray) -> np.ndarray:
        """This party's own ids of aligned positions: the row book pins customers, not positions."""
        rows = self.psi.aligned_rows
        if rows is None:
            raise RowRuleError(f"party {self.name!r}: no aligned rows; run PSI alignment first")
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(rows)):
            raise RowRuleError(f"party {self.name!r}: rows are not positions of the {len(rows)} aligned rows")
        return np.asarray(self.data.ids)[rows[positions]]

    def _aligned_raw_X(self, X: np.ndarray | None = None) -> np.ndarray:
        """The aligned rows of ``X`` (default: the table; GBDT passes its view with NaN in native columns)."""
        table, rows = self._aligned_table()
        return (table if X is None else X)[rows]

    def _aligned_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The table and its aligned row numbers, for protocols that read the aligned rows in place (no copy)."""
        rows = self.psi.aligned_rows
        if rows is None:
            raise ValueError(f"party {self.name!r}: no aligned rows; run PSI alignment first")
        return self.data.X, rows

    def _aligned_X(self) -> np.ndarray:
        """The model's view of the aligned rows: WOE-coded selected columns while a scorecard trains."""
        X = self._aligned_raw_X()
        return self.woe.transform(X) if self.use_woe else X

    def set_woe(self, msg: Message) -> Message:
        """Switch the secure LR's inputs between raw columns and this party's WOE-coded columns. Refused while a
        secure-LR instance is open (review R12-VER-3): a part trained on raw columns filed as a scorecard would
        let `vertical.summary` open its raw weights, so the choice is fixed at that instance's vlr.setup."""
        on = bool(msg.meta["on"])
        if self.lr_woe is not None and on != self.lr_woe:
            raise ValueError(f"party {self.name!r}: refuses vertical.use_woe={on} while a secure-LR instance set up "
                             f"with use_woe={self.lr_woe} is open (the choice is fixed at vlr.setup)")
        if on and self.woe.tables is None:
            raise ValueError(f"party {self.name!r}: no WOE tables yet (run federated WOE binning first)")
        self.use_woe = on
        self.scorecard_monotone = bool(msg.meta.get("monotone", True))  # [vertical.scorecard] monotone
        self.lr.feature_names = ([t.feature for t in self.woe.tables or []] if self.use_woe
                                 else list(self.data.feature_names))
        return msg.reply("vertical.ack", meta={"features": len(self.lr.feature_names)})

    def _setup_lr(self, msg: Message) -> Message:
        """vlr.setup, fixing this instance's WOE/raw choice (its inputs are read here, once)."""
        reply = self.lr.setup(msg)
        if not reply.is_error:
            self.lr_woe = self.use_woe
        return reply

    def _finish_lr(self, msg: Message) -> Message:
        """vlr.finish, plus the WOE coding when the part is a scorecard (it scores raw rows later). Filed as a
        scorecard only when the instance was set up on WOE columns (the choice made at its vlr.setup)."""
        with_woe = bool(self.lr_woe)
        reply = self.lr.finish(msg)
        if reply.is_error:
            return reply
        self.lr_woe = None
        if with_woe and self.lr.part is not None:
            part = self.lr.part
            part.woe, part.columns = list(self.woe.tables or []), list(self.woe.columns)
            # the validator's rules, on this party's own tables and weights (`scorecard_rules`)
            part.weights, flags = apply_scorecard_rules(part.weights, part.scaler.scale, part.woe,
                                                        monotone=self.scorecard_monotone)
            part.meta["scorecard_flags"] = flags
        if self.lr.part is not None:
            self.records.keep_part(msg.run_id, "scorecard" if with_woe else "lr", self.lr.part)
        return reply

    def _aligned_y(self) -> np.ndarray | None:
        rows = self.psi.aligned_rows
        if self.data.y is None or rows is None:
            return None
        return self.data.y[rows]

    def _part(self) -> LocalLinearPart:
        part = self.lr.part or self.loaded_part
        if part is None:
            raise ValueError(f"party {self.name!r} holds no trained model part")
        return part

    # --- the bank's own model -----------------------------------------------------------------------
    def local_baseline(self, msg: Message) -> Message:
        """Label holder only: an ordinary LR on its own columns, trained and scored locally (`party_baseline`).

        The comparison every bank asks for: what do the partners add? Only aggregate test metrics are reported.
        """
        if self.data.y is None:
            raise ValueError(f"party {self.name!r} has no labels: only the label holder trains a local baseline")
        X_all, y_all = self._aligned_X(), self._aligned_y()
        assert y_all is not None
        return local_baseline(msg, self.name, X_all, y_all, self.run_rows(msg.run_id))
