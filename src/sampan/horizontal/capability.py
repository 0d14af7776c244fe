"""The horizontal capabilities: `HORIZONTAL` (training) and `EVALUATION` (federated evaluation of a model).

Both are looked up by name in `sampan.runtime.capabilities`; the same `party_app` serves the in-process
simulation (`simulate` builds every party's setup from the run config) and a deployed party agent.

What a `PartySetup` must hold for these capabilities (a deployed agent fills it the same way):
- ``data``: ``(train, test)``, two `sampan.data.PartyData` with the same columns: the split the party
  computed itself (a deployed agent draws its holdout per row by a keyed hash); ``test`` may be empty.
- ``policy``: the party's `PartyPrivacyPolicy` (minimum noise, required levels, its own ledger), or None
  (simulation: the permissive default; a party still refuses what its handlers refuse by themselves).
- ``identity`` and ``verifier``: sign and check secure-aggregation keys; with them the party gets a
  `SecAggClient`. ``options["secagg"]`` overrides it (an agent's client with its state dir, or None to
  refuse secure aggregation outright).
- ``state_dir``: where the party records the models it evaluated (one per DP run, across restarts).
- ``options["max_evaluations"]``: how many runs may evaluate its holdout, over the party's life.
- ``job["model"]``: the job's ``model.kind``; only a ``"gbdt"`` job mounts the tree handlers (``hgb.*``, with the
  bank's DP mod `sampan.privacy.gbdt_dp` around them) and scores tree payloads, and it mounts no `fit`, `stats`
  or `impute_stats` (only `describe` and `evaluate` of the ordinary handlers: review R13-HGB-4); ``job["gbdt"]``
  gives its shape (n_trees, max_depth, n_bins: the most a quantile sketch is answered at) and whether it runs
  under DP (then, or when the party's policy requires DP, no exact tree statistic leaves);
  a party whose job announces secure aggregation refuses it (tree histograms leave per bank).
- ``job["bank_alone"]``: the job announced each bank alone vs the consortium; only then does the party answer
  `bank_alone` (`sampan.horizontal.local_comparison`, with its privacy mod).
- ``job["protections"]``: with ``"secure_aggregation"`` the party answers `fit`/`evaluate` only under SecAgg.
  An ``"evaluation"`` job mounts `evaluate` only (and the SecAgg stages when it announced them).

What each role learns: see `sampan.horizontal.party` (per message kind) and `sampan.horizontal.workflow`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sampan.core.capability import PartySetup
from sampan.core.party import Handler, Mod, PartyApp
from sampan.core.workflow import ModelArtifact, RunContext, Workflow, WorkflowResult
from sampan.crypto.simulated_ca import simulated_consortium
from sampan.horizontal.decision import decision_info
from sampan.horizontal.gbdt import GBDT_KIND, HorizontalGBDTParty, validation_split
from sampan.horizontal.gbdt_workflow import HorizontalGBDTWorkflow
from sampan.horizontal.group_evaluation import mount_groups
from sampan.horizontal.local_comparison import mount_bank_alone
from sampan.horizontal.party import HorizontalParty
from sampan.horizontal.secure_rounds import COORDINATOR
from sampan.horizontal.simulation import load_splits
from sampan.horizontal.workflow import HorizontalWorkflow, histogram_metrics, result_info
from sampan.metrics import ScoreHistogram
from sampan.privacy.gbdt_dp import gbdt_dp_mod
from sampan.privacy.party_policy import PolicyRefused
from sampan.privacy.secagg import SecAggClient
from sampan.wire import Message

__all__ = ["EVALUATION", "HORIZONTAL", "EvaluationWorkflow", "HorizontalCapability", "EvaluationCapability"]

_NOT_GIVEN = object()


def horizontal_party(setup: PartySetup) -> HorizontalParty:
    """The party's handler object for one job, from its setup (see the module docstring)."""
    train, test = setup.data
    secagg = setup.options.get("secagg", _NOT_GIVEN)
    if secagg is _NOT_GIVEN:
        secagg = (SecAggClient(setup.name, identity=setup.identity, verifier=setup.verifier)
                  if setup.identity is not None else None)
    return HorizontalParty(setup.name, train, test, setup.policy, secagg=secagg, state_dir=setup.state_dir,
                           max_evaluations=setup.options.get("max_evaluations"),
                           trees=setup.job.get("model") == GBDT_KIND,
                           announced_dp=bool(_announced(setup) & {"dp", "dp1", "dp2", "dp3"}))


def simulated_setups(config: Any, seed: int, workflow: str) -> dict[str, PartySetup]:
    """Every party's setup from the config's [source]/[[parties]]: its table split at the party (from the seed),
    and a certificate from a simulated consortium CA made for this run (its CA key dropped once issued)."""
    splits = load_splits(config, seed)
    verifier, identities = simulated_consortium(list(splits))
    job: dict[str, Any] = {"workflow": workflow, "model": str(getattr(config.model, "kind", "logistic"))}
    if getattr(config, "bank_alone", None) is not None and workflow == "horizontal":
        job["bank_alone"] = True  # each bank alone vs the consortium (`local_comparison`)
    evaluation = getattr(config, "evaluation", None)
    if getattr(evaluation, "groups", None) and workflow == "horizontal":
        job["groups"] = True  # fairness by group after the final evaluation (`group_evaluation`)
    if getattr(config, "privacy", None) is not None:  # a DP run, known to each party at setup (no exact release)
        job["protections"] = ["dp"]
    trees: dict[str, Any] = {"gbdt": gbdt_job(config)} if job["model"] == GBDT_KIND else {}
    return {name: PartySetup(name, (split.train, split.test), {**job, **trees}, identity=identities[name],
                             verifier=verifier) for name, split in splits.items()}


class HorizontalCapability:
    """Horizontal training: logistic regression and MLP (`HorizontalWorkflow`)."""

    name = "horizontal"

    def workflow(self, config: Any) -> Workflow:
        if getattr(config.model, "kind", None) == GBDT_KIND:
            return HorizontalGBDTWorkflow(config)
        return HorizontalWorkflow(config)

    def party_app(self, setup: PartySetup) -> PartyApp:
        party = horizontal_party(setup)
        app = PartyApp(setup.name, mods=[announced_secagg_mod(setup), *party.mods])  # privacy around exact handlers
        trees = setup.job.get("model") == GBDT_KIND
        for kind, handler in party.core_handlers().items():
            if not trees or kind in _TREE_JOB_KINDS:  # review R13-HGB-4: a tree job answers no fit/stats
                app.register(kind, handler)
        if setup.job.get("bank_alone"):  # the job asked for each bank alone vs the consortium (issue 13)
            mount_bank_alone(app, party)
        if setup.job.get("groups"):  # the job asked for per-group histograms (issue 13 item 8)
            mount_groups(app, party)
        if setup.job.get("model") == GBDT_KIND:  # tree jobs only, with the bank's DP mod around them
            if "secure_aggregation" in _announced(setup):  # review R12-HOR-2: trees have no secure aggregation
                raise PolicyRefused(f"party {setup.name!r} refuses a gbdt job that announces secure aggregation: "
                                    "horizontal GBDT sends each bank's histograms per bank, none is masked")
            mount_trees(app, setup, party)
        return app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        return simulated_setups(config, seed, self.name)


def mount_trees(app: PartyApp, setup: PartySetup, party: HorizontalParty) -> None:
    """A gbdt job's tree handlers (``hgb.*``) and, outermost, the bank's DP mod (`sampan.privacy.gbdt_dp`). DP is
    required when the job announced it (``job["gbdt"]["dp"]`` or "gbdt_dp" in its protections) or the bank's policy
    requires any DP: then no exact tree statistic leaves, and all training rows fit the trees (no validation
    split: early stopping would need an uncharged validation loss). ``job["gbdt"]`` (n_trees, max_depth) bounds
    the releases the bank answers."""
    shape = setup.job.get("gbdt") or None
    dp = bool(shape and shape.get("dp")) or "gbdt_dp" in _announced(setup) or (
        setup.policy is not None and setup.policy.requires_dp())
    train = setup.data[0]
    fit_rows, validation = (train, None) if dp else validation_split(setup.name, train)
    app.mods.insert(0, gbdt_dp_mod(party.dp, train.X.shape[1], shape=shape, announced=dp))
    bank = HorizontalGBDTParty(setup.name, fit_rows, validation, max_bins=(shape or {}).get("n_bins"))
    for kind, handler in bank.handlers().items():
        app.register(kind, handler)


def gbdt_job(config: Any) -> dict[str, Any]:
    """What a gbdt job tells each bank (simulation; a deployed job says the same): its shape and whether its
    histograms are under DP."""
    model = config.model
    privacy = getattr(config, "privacy", None)
    return {"n_trees": int(model.n_trees), "max_depth": int(model.max_depth), "n_bins": int(model.n_bins),
            "dp": privacy is not None and getattr(privacy, "gbdt", None) is not None}


# the ordinary handlers a gbdt job mounts next to its tree handlers: the workflow asks for the row count and the
# one holdout evaluation only; `fit`, `stats`, `impute_stats` would release exact statistics no tree DP covers
_TREE_JOB_KINDS = frozenset({"describe", "evaluate"})


def _announced(setup: PartySetup) -> set[str]:
    return set(setup.job.get("protections") or ())


def announced_secagg_mod(setup: PartySetup) -> Mod:
    """A job that announced secure aggregation gets no `fit`/`evaluate` answered in clear (review R12-HOR-3): its
    announcement (and the receipt built from it) promised sums over several banks. The deploy gate checks the
    same (`sampan.deploy.allow.check_request`); this is the party's own copy of the rule."""
    secure = "secure_aggregation" in _announced(setup)

    def mod(msg: Message, inner: Handler) -> Message:
        if secure and msg.kind in ("fit", "evaluate") and "secagg" not in msg.meta:
            raise PolicyRefused(f"party {setup.name!r} refuses {msg.kind!r} without secure aggregation: the job it "
                                "accepted announced secure aggregation")
        return inner(msg)
    return mod


class EvaluationWorkflow(Workflow):
    """Evaluate one model on every party's holdout through the parties' `evaluate` handler.

    The model is either given (a `ModelArtifact`, for Python callers) or named: a registered model of the
    coordinator's own registry, resolved at run time through ``ctx.recorder.registered_model`` (the workflow
    never opens a store). One fan-out; the result is the merged-histogram metrics, each party's own metrics (as
    it reports them) and the ROC/calibration material. No model is registered. What each role learns: the
    coordinator learns each party's evaluation reply (`sampan.horizontal.party`, kind `evaluation`); a party
    learns the evaluated model (as in any horizontal round)."""

    name = "evaluation"

    def __init__(self, model: ModelArtifact | str, version: int | None = None, bins: int | None = None) -> None:
        if isinstance(model, ModelArtifact):
            _check_model(model)
        self.model, self.version, self.bins = model, version, bins

    def resolve(self, ctx: RunContext) -> ModelArtifact:
        """The model to evaluate: the given artifact, or the named one from the coordinator's registry."""
        if isinstance(self.model, ModelArtifact):
            return self.model
        return _check_model(ctx.recorder.registered_model(self.model, self.version))

    def run(self, ctx: RunContext) -> WorkflowResult:
        ctx.check_cancelled()
        model = self.resolve(ctx)
        arrays = {k.removeprefix("scaler."): v for k, v in model.arrays.items()}
        meta: dict[str, Any] = {"model": dict(model.meta["model"])}
        if self.bins is not None:  # else each party's default (its own rules decide under DP / SecAgg)
            meta["bins"] = int(self.bins)
        messages = (Message(ctx.run_id, 1, COORDINATOR, party, "evaluate", arrays=arrays, meta=dict(meta))
                    for party in sorted(ctx.transport.parties))
        histogram: ScoreHistogram | None = None
        n, loss_sum, brier_sum, per_party = 0, 0.0, 0.0, {}
        for reply in ctx.transport.exchange(messages):
            part = ScoreHistogram.from_arrays(dict(reply.arrays))
            histogram = part if histogram is None else histogram + part
            n += int(reply.meta["n"])
            loss_sum += float(reply.meta["loss_sum"])
            brier_sum += float(reply.meta["brier_sum"])
            per_party[reply.sender] = dict(reply.meta.get("metrics") or {})
        if histogram is None:
            raise ValueError("evaluation: no party answered")
        metrics = histogram_metrics(histogram, loss_sum, brier_sum, n)
        ctx.recorder.checkpoint(1, {}, {}, {"global": metrics, "party": per_party}, 0.0)
        evaluated: dict[str, Any] = {"name": model.name, "meta": _json(model.meta)}
        if not isinstance(self.model, ModelArtifact):
            evaluated["version"] = self.version
        info = {"evaluated_model": evaluated, "party_metrics": per_party, **result_info(histogram),
                **decision_info(ctx.config, histogram)}  # the threshold this evaluation would choose (issue 13)
        return WorkflowResult(final_metrics=metrics, models=(), info=info)


def _check_model(model: ModelArtifact) -> ModelArtifact:
    if "params" not in model.arrays or "model" not in model.meta:
        raise ValueError(f"model {model.name!r}: a horizontal model needs 'params' and meta 'model'")
    return model


def _json(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in meta.items()}


class EvaluationCapability:
    """Federated evaluation of a registered model. The config's ``[evaluation] model`` names it in the
    coordinator's registry (resolved when the run starts); a Python caller may put the `ModelArtifact` there."""

    name = "evaluation"

    def workflow(self, config: Any) -> Workflow:
        section = getattr(config, "evaluation", None)
        model = getattr(section, "model", None) if section is not None else None
        if not isinstance(model, (ModelArtifact, str)) or not model:
            raise ValueError("evaluation: no resolved model and no registered name: give [evaluation] model = a "
                             "registered model's name (or, from Python, a resolved sampan.core.ModelArtifact)")
        return EvaluationWorkflow(model, getattr(section, "version", None), getattr(section, "bins", None))

    def party_app(self, setup: PartySetup) -> PartyApp:
        """`evaluate` only, and the SecAgg stages when the job announced secure aggregation (review R12-HOR-4): a
        bank that lends its holdout to score a model answers no `fit`, `describe` or `stats` about its rows."""
        party = horizontal_party(setup)
        app = PartyApp(setup.name, mods=[announced_secagg_mod(setup), *party.mods])
        secure = "secure_aggregation" in _announced(setup)
        for kind, handler in party.core_handlers().items():
            if kind == "evaluate" or (secure and kind.startswith("secagg_")):
                app.register(kind, handler)
        return app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        return simulated_setups(config, seed, self.name)


HORIZONTAL = HorizontalCapability()
EVALUATION = EvaluationCapability()
