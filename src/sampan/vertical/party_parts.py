"""A vertical party's own records of a run: which stages it holds, its model parts, its releases to the report.

These handlers exist so the coordinator never reads a party's memory: everything a run report shows
comes out of a party in a reply it chose to send, and every model part is written by the party that
owns it into its own registry (`PartySetup.registry`, a `sampan.runtime.store.Store` or anything with
its `register_model` / `get_model`), never by the coordinator.

What each role learns from these messages:

* ``vertical.state``: the coordinator learns which stages of this run the party still holds (a party
  that restarted holds none, so the run starts again from alignment).
* ``vertical.summary``: the coordinator learns, from the bank, the information value of every feature
  (the bank's IV report, computed from the possibly noised partner counts) and the bank's own scorecard
  rows; from each partner only its own scorecard rows (points per WOE bin of its own features). That is
  what the run report shows; nothing else of a party's model leaves.
* ``vertical.save_model`` / ``vertical.load_model``: the coordinator learns the names and versions of
  what each party registered in its own registry, never the arrays. Each part records the run's proved
  label holder and parties; a part is loaded only in a run whose proved label holder is the same (review
  R12-VER-5: a partner serving several banks never scores for one with its part of another's model).
* ``score.save``: the coordinator learns how many scored applications the bank kept; the scores stay
  in the bank's registry (``<name>-scores:<bank>``), which only the bank (the CLI acting as the bank) reads.
* the bank also keeps the run's held-out customers (its own ids) in its registry (``<name>-holdout:<bank>``,
  `sampan runs holdout RUN --out ids.csv` at the bank); the coordinator learns only that it was kept.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampan.errors import DataError
from sampan.models.scorecard import ScoreScaling
from sampan.vertical.fill_record import recorded_fill, refill
from sampan.vertical.model import LocalLinearPart
from sampan.wire import Message

if TYPE_CHECKING:
    from sampan.vertical.party import VerticalParty

__all__ = ["PartRecords", "MODEL_SUFFIX", "part_name", "scores_name", "holdout_name", "read_test_ids",
           "read_test_id_list", "STAGES", "VIEWS"]

STAGES = ("aligned", "lr", "scorecard", "gbdt")

# every field the coordinator sees in these replies (role, message, field, protection), for the run receipt
VIEWS: tuple[tuple[str, str, str, str], ...] = (
    ("coordinator", "vertical.state", "reply:meta:stages", "public: the stages of this run the party holds"),
    ("coordinator", "vertical.summary", "reply:meta:iv", "released by the bank: IV per feature of every party "
     "(from noised partner counts when DP is on)"),
    ("coordinator", "vertical.summary", "reply:meta:scorecard", "released by each party: points and WOE per bin "
     "of its own features only"),
    ("coordinator", "vertical.save_model", "reply:meta:saved", "public: registry versions, never the arrays"),
    ("coordinator", "score.save", "reply:meta:n", "public: how many scored applications the bank kept"),
    ("coordinator", "score.metrics", "reply:meta:curves", "released by the bank: per model, counts of defaults and "
     "non-defaults and the summed PD in fixed PD bands of the held-out rows, adjacent bands merged until each "
     "released band holds at least 10 rows (ROC and calibration curves; no DP: the test rows are outside the DP "
     "unit, each model evaluated once on the fixed test rows the bank computed)"),
    ("coordinator", "vgb.metrics", "reply:meta:curves", "released by the bank: the same band counts for the vertical "
     "GBDT's held-out evaluation"),
    ("coordinator", "vertical.saved", "reply:meta:holdout", "public: that the bank kept the held-out ids (how many)"),
)
_RECORD_SUFFIXES = ("-scores", "-holdout")  # the bank's own records in its registry, not model parts
MODEL_SUFFIX = {"lr": "", "scorecard": "-scorecard", "gbdt": "-gbdt"}


def part_name(model: str, kind: str, party: str) -> str:
    """The registry name of one party's part of a run's model: ``<model>[-scorecard|-gbdt]:<party>``."""
    return f"{model}{MODEL_SUFFIX[kind]}:{party}"


def scores_name(name: str, party: str) -> str:
    """The bank's own record of a scoring request's results in its registry."""
    return f"{name}-scores:{party}"


def holdout_name(name: str, party: str) -> str:
    """The bank's record of a run's held-out customers (its own ids) in its own registry."""
    return f"{name}-holdout:{party}"


def read_test_id_list(party: str, path: str | Path) -> list[str]:
    """The bank's explicit test customers as listed: a CSV with one id per line (an ``id`` header is skipped;
    `bank_splits` checks repeats and unknown ids). A clear error names the party and the file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            ids = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"party {party!r}: cannot read the test ids file {str(path)!r} ([vertical] test_ids): "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    ids = [i for i in ids if i != "id"]
    if not ids:
        raise DataError(f"party {party!r}: the test ids file {str(path)!r} ([vertical] test_ids) names no customer")
    return ids


def read_test_ids(party: str, path: str | Path) -> set[str]:
    """The distinct ids of the bank's test file (`read_test_id_list`)."""
    return set(read_test_id_list(party, path))


class PartRecords:
    """The run-level handlers of one `VerticalParty` (see the module docstring for what each reveals)."""

    def __init__(self, party: VerticalParty, registry: Any = None) -> None:
        self.party = party
        self.registry = registry
        self.unfilled: Any = None  # the party's table before imputation (`vertical_party`): loaded parts refill it
        self.stages: dict[str, set[str]] = {}                       # run id -> stages this party holds
        self.parts: dict[tuple[str, str], LocalLinearPart] = {}     # (run id, "lr"|"scorecard") -> finished part

    def handlers(self) -> dict[str, Callable[[Message], Message]]:
        return {"vertical.state": self.state, "vertical.stage_done": self.stage_done,
                "vertical.summary": self.summary, "vertical.save_model": self.save_model,
                "vertical.load_model": self.load_model, "score.save": self.save_scores}

    def keep_part(self, run_id: str, kind: str, part: LocalLinearPart) -> None:
        self.parts[(run_id, kind)] = part

    def state(self, msg: Message) -> Message:
        """The stages of this run this party still holds (its channels must be this run's)."""
        held = self.stages.get(msg.run_id, set()) if self.party.channel_run == msg.run_id else set()
        return msg.reply("vertical.state", meta={"stages": sorted(held)})

    def stage_done(self, msg: Message) -> Message:
        stage = str(msg.meta["stage"])
        if stage not in STAGES:
            raise ValueError(f"party {self.party.name!r}: unknown vertical stage {stage!r} (known: {STAGES})")
        if self.party.channel_run != msg.run_id:
            raise ValueError(f"party {self.party.name!r}: holds no channels of run {msg.run_id!r}")
        self.stages.setdefault(msg.run_id, set()).add(stage)
        return msg.reply("vertical.ack")

    def summary(self, msg: Message) -> Message:
        """Release this party's scorecard rows (and, at the bank, its IV report) for the run report."""
        rows: list[dict[str, Any]] = []
        card = self.parts.get((msg.run_id, "scorecard"))
        if card is not None:
            rows = card.scorecard_rows(ScoreScaling(), label_holder=self.party.is_label_holder)
        iv: dict[str, dict[str, float]] = {}
        if self.party.is_label_holder:
            iv = {p: {f: float(v) for f, v in dict(r["iv"]).items()} for p, r in self.party.woe.report.items()}
        return msg.reply("vertical.summary", meta={"scorecard": rows, "iv": iv})

    def _registry(self) -> Any:
        if self.registry is None:
            raise ValueError(f"party {self.party.name!r} has no model registry (PartySetup.registry) to keep its "
                             "part in")
        return self.registry

    def _proved(self, run_id: str, what: str) -> tuple[str, list[str]]:
        """This run's label holder and parties as the signed run keys proved them (never the coordinator's word)."""
        channels = self.party.channels
        if channels is None or self.party.channel_run != run_id:
            raise ValueError(f"party {self.party.name!r}: {what} needs this run's channels (vertical.hello/peers of "
                             f"run {run_id!r} first)")
        holders = sorted(n for n, r in channels.roles.items() if r == "label_holder")
        if len(holders) != 1:
            raise ValueError(f"party {self.party.name!r}: {what}: run {run_id!r} has no single proved label holder")
        return holders[0], sorted(channels.roles)

    def save_model(self, msg: Message) -> Message:
        """Register this party's own part of each named model kind in its own registry, with the run's proved
        label holder and parties (what `load_model` checks a later run against)."""
        registry, name = self._registry(), str(msg.meta["name"])
        holder, parties = self._proved(msg.run_id, "vertical.save_model")
        saved: dict[str, int] = {}
        for kind in msg.meta["kinds"]:
            if kind == "gbdt":
                arrays, meta = self.party.gbdt.part_arrays()
            else:
                part = self.parts.get((msg.run_id, str(kind)))
                if part is None:
                    raise ValueError(f"party {self.party.name!r}: no finished {kind!r} part in run {msg.run_id!r}")
                arrays, meta = part.to_arrays()
            meta = {**meta, "label_holder": holder, "run_parties": parties, **recorded_fill(self.party.data)}
            saved[str(kind)] = int(registry.register_model(part_name(name, str(kind), self.party.name), msg.run_id,
                                                           arrays, meta))
        out: dict[str, Any] = {"saved": saved}
        test = self.party.row_book.test_customers if self.party.is_label_holder else []
        if test:  # the bank's own record of who was held out (`sampan runs holdout`); only the count leaves
            registry.register_model(holdout_name(name, self.party.name), msg.run_id, {},
                                    {"ids": test, "kind": "holdout"})
            out["holdout"] = len(test)
        return msg.reply("vertical.saved", meta=out)

    def load_model(self, msg: Message) -> Message:
        """Load this party's own registered part (by run and model kind) to score with."""
        registry, kind = self._registry(), str(msg.meta["kind"])
        found = [m for m in registry.models_for_run(str(msg.meta["model_run"]))
                 if m.name.endswith(f":{self.party.name}") and not m.name.rsplit(":", 1)[0].endswith(_RECORD_SUFFIXES)
                 and _kind_of(m.name) == kind]
        if not found:
            raise ValueError(f"party {self.party.name!r}: no registered {kind!r} part of run {msg.meta['model_run']!r} "
                             "in its registry (did that run finish, with this model among its models?)")
        model = found[-1]
        holder, _ = self._proved(msg.run_id, "vertical.load_model")
        trained_with = (model.meta or {}).get("label_holder")
        if trained_with != holder:
            raise ValueError(f"party {self.party.name!r}: refuses to load {model.name!r} "
                             f"(run {msg.meta['model_run']!r}) in run {msg.run_id!r}: that part was trained with "
                             f"label holder {trained_with!r}, this run's proved label holder is {holder!r}")
        refill(self.party, self.unfilled, (model.meta or {}).get("fill_values"))  # impute as training did
        if kind == "gbdt":
            self.party.gbdt.load_part(model.arrays, model.meta)
        else:
            self.party.loaded_part = LocalLinearPart.from_arrays(model.arrays, model.meta)
        return msg.reply("vertical.ack", meta={"name": model.name, "version": model.version})

    def save_scores(self, msg: Message) -> Message:
        """Bank: keep the results of scoring requests in its own registry; only their count leaves."""
        if not self.party.is_label_holder:
            raise ValueError(f"party {self.party.name!r}: only the label holder keeps scoring results")
        results: list[dict[str, Any]] = []
        for request in msg.meta["requests"]:
            if request in self.party.scoring.results:
                results += [r.as_dict() for r in self.party.scoring.results[request]]
            elif request in self.party.gbdt.results:
                results += [dict(r) for r in self.party.gbdt.results[request]]
            else:
                raise ValueError(f"party {self.party.name!r}: no scoring results for request {request!r}")
        self._registry().register_model(scores_name(str(msg.meta["name"]), self.party.name), msg.run_id, {},
                                        {"results": results, "requests": list(msg.meta["requests"])})
        return msg.reply("score.saved", meta={"n": len(results)})


def _kind_of(registered: str) -> str:
    base = registered.rsplit(":", 1)[0]
    return "scorecard" if base.endswith("-scorecard") else "gbdt" if base.endswith("-gbdt") else "lr"
