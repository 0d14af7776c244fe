"""`RunConfig`: one description of a run for every workflow, read by `sampan run` and `sampan submit` alike.

Simulation and deployment differ only in where the parties are: in a simulation each `[[parties]]`
entry has a `path` (or a `[source]` simulates the federation); a config submitted to a coordinator
names parties without paths, since each party's agent binds its data in its own party.toml. Promoting a
simulated config to a deployment = deleting the `path`/`format` lines (and adding `[deploy] dataset`):
a path is refused, not ignored, because a file on the operator's machine says nothing about a bank's.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from sampan.compute import ComputeSettings
from sampan.config.base import Strict
from sampan.config.checks import ChecksSection
from sampan.config.privacy import PrivacySection, SecureAggregationSection
from sampan.config.sections import (
    BankAloneSection,
    DataSection,
    EvaluationSection,
    ModelSection,
    PartySection,
    RunSection,
    SourceSection,
    StrategySection,
    TrainingSection,
    Workflow,
)
from sampan.config.vertical import ScoringSection, SynthesisSection, VerticalSection
from sampan.data.schema import TableSchema

__all__ = ["RunConfig", "infer_workflow"]


def infer_workflow(data: dict[str, Any]) -> Workflow:
    """The workflow a config without `run.workflow` means: the section that only that workflow reads."""
    for section in ("checks", "vertical", "synthesis", "scoring", "evaluation"):
        if section in data and (section != "evaluation" or "model" in (data[section] or {})):
            return section  # [evaluation] without a model: a training run's threshold and groups
    return "horizontal"


class RunConfig(Strict):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    strategy: StrategySection = Field(default_factory=StrategySection)
    data: DataSection = Field(default_factory=DataSection)
    schema_: TableSchema | None = Field(default=None, alias="schema")
    parties: list[PartySection] = Field(default_factory=list)
    source: SourceSection | None = None
    privacy: PrivacySection | None = None
    secure_aggregation: SecureAggregationSection | None = None
    vertical: VerticalSection | None = None
    scoring: ScoringSection | None = None
    synthesis: SynthesisSection | None = None
    evaluation: EvaluationSection | None = None
    bank_alone: BankAloneSection | None = None
    checks: ChecksSection | None = None
    compute: ComputeSettings | None = None  # simulation: the engine the simulated parties' row blocks run on

    model_config = Strict.model_config | {"populate_by_name": True}

    @model_validator(mode="before")
    @classmethod
    def _name_the_workflow(cls, data: Any) -> Any:
        if isinstance(data, dict):
            run = data.get("run") or {}
            if isinstance(run, dict) and run.get("workflow") is None:
                data = {**data, "run": {**run, "workflow": infer_workflow(data)}}
        return data

    # --- accessors workflows use ------------------------------------------------------------------------
    @property
    def workflow(self) -> Workflow:
        assert self.run.workflow is not None  # filled in by _name_the_workflow
        return self.run.workflow

    @property
    def schema(self) -> TableSchema | None:  # type: ignore[override]  # BaseModel.schema is pydantic v1's
        return self.schema_

    @property
    def party_names(self) -> list[str]:
        return [p.name for p in self.parties]

    def party_schema(self, name: str) -> TableSchema:
        """The table schema party `name` loads: [schema] itself (horizontal), or its own columns of it
        (vertical: the id, the features it holds, the label at the label holder)."""
        if self.schema_ is None:
            raise KeyError("this config has no [schema] (a deployed party's schema is in its party.toml)")
        party = next((p for p in self.parties if p.name == name), None)
        if party is None:
            raise KeyError(f"no party {name!r} (parties: {self.party_names})")
        if party.features is None:
            return self.schema_
        holder = self.vertical.label_holder if self.vertical is not None else None
        return self.schema_.for_party(party.features, with_label=name == holder)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form stored with the run, so `--resume` needs no config file (parses back equal)."""
        out = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not out.get("parties"):
            out.pop("parties", None)
        return out

    # --- checks across sections -----------------------------------------------------------------------
    @model_validator(mode="after")
    def _coherent(self, info: ValidationInfo) -> RunConfig:
        deployment = bool((info.context or {}).get("deployment"))
        _check_parties(self, deployment)
        _check_workflow(self, deployment)
        _check_privacy(self)
        _check_missing(self)
        return self


def _check_parties(config: RunConfig, deployment: bool) -> None:
    names = config.party_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"party names must be unique; repeated: {duplicates}")
    with_path = [p.name for p in config.parties if p.path is not None or p.format is not None
                 or p.test_path is not None]
    if config.data.test_path is not None and (deployment or config.source is not None or (
            len(config.parties) > 1 and "{party}" not in config.data.test_path)):
        raise ValueError("data.test_path: each party's held-out file in a simulation with [[parties]], written with "
                         "'{party}' for the party's name when there are several (a submitted config names no file)")
    if deployment:
        if config.source is not None:
            raise ValueError("a run submitted to a coordinator has no data binding (source): [source] simulates a "
                             "federation; each party's data is bound in its own party.toml")
        if with_path:
            raise ValueError(f"a run submitted to a coordinator has no data binding: remove path/format of parties "
                             f"{with_path} (each party's agent binds its data in its own party.toml)")
        return
    if config.source is None and not config.parties:
        raise ValueError("give either [[parties]] (with [schema]) or a [source] section")
    if config.source is not None and config.parties:
        raise ValueError("give either [[parties]] or [source], not both")
    missing = [p.name for p in config.parties if p.path is None]
    if missing:
        raise ValueError(f"parties {missing} have no path: a simulation reads each party's table from its path "
                         "(only a config submitted to a coordinator leaves paths out)")
    if config.parties and config.schema_ is None:
        raise ValueError("[[parties]] need a [schema] section naming the id, label and feature columns")


def _check_scoring(config: RunConfig) -> None:
    """A scoring run names its applicants; a serving job (`sampan serve`'s session) names none: they come over
    HTTP to the bank, never through the coordinator."""
    scoring = config.scoring
    if config.workflow == "serving" and (scoring is None or scoring.applicants or scoring.applicants_file):
        raise ValueError("run.workflow = 'serving' needs [scoring] model (and kind) and no applicants: the "
                         "applicants reach the bank's `sampan serve` over HTTP")
    if config.workflow != "serving" and scoring is not None and not (scoring.applicants or scoring.applicants_file):
        raise ValueError("give exactly one of scoring.applicants (the ids) and scoring.applicants_file (a CSV at "
                         "the bank)")


def _check_workflow(config: RunConfig, deployment: bool) -> None:
    workflow = config.workflow
    for section in ("vertical", "scoring", "synthesis"):  # [evaluation]: a Python caller may pass the model itself
        if getattr(config, section) is None and workflow == section:
            raise ValueError(f"run.workflow = {workflow!r} needs a [{section}] section")
    _check_scoring(config)
    if config.checks is not None and workflow != "checks":
        raise ValueError(f"[checks] is set but run.workflow is {workflow!r}")
    if config.vertical is not None and workflow not in ("vertical", "scoring", "serving", "checks"):
        raise ValueError(f"[vertical] is set but run.workflow is {workflow!r}")
    if config.synthesis is not None and workflow != "synthesis":
        raise ValueError(f"[synthesis] is set but run.workflow is {workflow!r}")
    if config.evaluation is not None and config.evaluation.model is not None and workflow != "evaluation":
        raise ValueError(f"[evaluation] is set but run.workflow is {workflow!r} (evaluation.model names a "
                         "registered model to evaluate; a training run's [evaluation] takes no model)")
    if config.evaluation is not None and workflow == "evaluation":
        _check_evaluation(config)
    _check_decision(config)
    if config.bank_alone is not None:
        _check_bank_alone(config)
    if config.model.kind == "gbdt" and workflow == "vertical":
        raise ValueError("a vertical run chooses its models in vertical.models, not model.kind")
    featured = [p.name for p in config.parties if p.features is not None]
    if config.vertical is None:
        if featured:
            raise ValueError(f"parties {featured}: features are a vertical party's columns; in a horizontal run "
                             "every party holds all of [schema]")
        if (config.schema_ is not None and config.schema_.label is None and config.parties
                and workflow in ("horizontal", "evaluation")):
            raise ValueError("schema.label: a horizontal run needs the label column")
        return
    _check_vertical(config, deployment)


def _check_bank_alone(config: RunConfig) -> None:
    """Each bank alone vs the consortium: a horizontal LR/MLP run; under [privacy] the local-only model is a DP-SGD
    release (charged as DP2), so DP2 settings must exist. Deployed, the job announces it and each agent checks it."""
    if config.workflow != "horizontal" or config.model.kind == "gbdt":
        raise ValueError("[bank_alone] compares each bank's local-only model with the consortium's in a horizontal "
                         "logistic/mlp run (not model.kind = 'gbdt' or another workflow)")
    if config.privacy is not None and config.privacy.dp2 is None:
        raise ValueError("bank_alone: under [privacy] the local-only model is trained by DP-SGD and charged as DP2; "
                         "add [privacy.dp2] (or remove [bank_alone])")


def _check_decision(config: RunConfig) -> None:
    """Class weights and group metrics where they are supported (issue 13 items 3, 8)."""
    evaluation, training = config.evaluation, config.training
    weighted = training.class_weight is not None or training.target_positive_rate is not None
    if weighted and config.privacy is not None and not isinstance(training.class_weight, dict):
        raise ValueError("training: under [privacy] the training positive rate is not released, so class weights "
                         "must be explicit: class_weight = {0 = 1.0, 1 = 5.0}")
    if weighted and config.model.kind == "gbdt" and not isinstance(training.class_weight, dict):
        raise ValueError("training: for model.kind = 'gbdt' give explicit class_weight = {0 = 1.0, 1 = 5.0} (it "
                         "becomes the trees' pos_weight = w1 / w0)")
    if evaluation is None or not evaluation.groups:
        return
    if config.workflow != "horizontal" or config.model.kind == "gbdt":
        raise ValueError("evaluation.groups: fairness by group is computed in horizontal logistic/mlp training runs "
                         "(not yet for gbdt, evaluation runs, or vertical runs: there the bank's own group columns "
                         "are not evaluated yet)")
    secagg = config.secure_aggregation
    if secagg is not None and secagg.enabled:
        raise ValueError("evaluation.groups: per-group histograms are not yet summed under secure aggregation; "
                         "remove [secure_aggregation] or evaluation.groups")
    schema = config.schema_
    if schema is not None:
        kinds = {f.name: f.kind for f in schema.features}
        for column in evaluation.groups:
            if column not in kinds:
                raise ValueError(f"evaluation.groups: {column!r} is not a [schema] feature")
            if kinds[column] == "category" and column in (evaluation.group_bands or {}):  # review R13-GRP-6
                raise ValueError(f"evaluation.group_bands.{column}: {column!r} is a category column (its groups are "
                                 "its categories); remove its bands")
            if kinds[column] != "category" and column not in (evaluation.group_bands or {}):
                raise ValueError(f"evaluation.groups: numeric column {column!r} needs evaluation.group_bands."
                                 f"{column} = [cut points]")


def _check_evaluation(config: RunConfig) -> None:
    """An evaluation run is horizontal (every party holds all of [schema]), asks for bins its parties accept and
    promises no secure aggregation it does not run."""
    from sampan.metrics.histogram import DP_BINS

    evaluation = config.evaluation
    assert evaluation is not None
    if config.vertical is not None:
        raise ValueError("[evaluation] evaluates a horizontal model on each party's holdout; it has no [vertical]")
    bins = evaluation.bins
    if bins is not None and config.privacy is not None and bins != DP_BINS:
        raise ValueError(f"evaluation.bins: under [privacy] a party bins evaluation scores into exactly {DP_BINS} "
                         f"(got {bins}); leave bins out")
    secagg = config.secure_aggregation
    if secagg is not None and secagg.enabled:  # the receipt would promise sums; each party's reply is in clear
        raise ValueError("[secure_aggregation]: an evaluation run gathers each party's evaluation reply (its "
                         "histogram and metrics) in clear, and a party that accepted a job announcing secure "
                         "aggregation refuses a clear 'evaluate'; remove [secure_aggregation]")


def _check_vertical(config: RunConfig, deployment: bool) -> None:
    vertical, schema = config.vertical, config.schema_
    assert vertical is not None
    if config.source is not None and config.source.kind != "consortium":
        raise ValueError(f"source.kind {config.source.kind!r} is split by rows; a vertical run reads [[parties]] "
                         "(one table per party) or the consortium's vertical view (source.kind = 'consortium')")
    if config.privacy is not None or config.secure_aggregation is not None:
        raise ValueError("[privacy] and [secure_aggregation] are a horizontal run's; vertical noise is set in "
                         "[vertical.scorecard] dp_epsilon and [vertical.gbdt_privacy] hist_noise")
    if schema is not None and vertical.id is not None and vertical.id != schema.id:
        raise ValueError(f"vertical.id {vertical.id!r} differs from schema.id {schema.id!r} (give one)")
    names = config.party_names
    if names and vertical.label_holder not in names:
        raise ValueError(f"vertical.label_holder {vertical.label_holder!r} is not one of the parties {names}")
    if (deployment and not config.parties) or config.source is not None:
        return  # agents bind the data / the simulated consortium's bank, payments and delivery tables
    if len(names) < 2:
        raise ValueError("a vertical run needs at least two [[parties]]")
    if schema is None:
        if deployment:
            return
        raise ValueError("a vertical run needs [schema]: the shared id, the label and every party's features")
    if schema.label is None:
        raise ValueError("schema.label: a vertical run needs the label column (held by vertical.label_holder)")
    declared = {f.name for f in schema.features}
    seen: dict[str, str] = {}
    for i, party in enumerate(config.parties):
        if party.features is None:
            raise ValueError(f"parties.{i}.features: vertical party {party.name!r} must list the [schema] "
                             "features it holds")
        unknown = [f for f in party.features if f not in declared]
        if unknown:
            raise ValueError(f"parties.{i}.features: {unknown} of party {party.name!r} are not declared in [schema]")
        for feature in party.features:
            if feature in seen:
                raise ValueError(f"parties.{i}.features: {feature!r} is held by both {seen[feature]!r} and "
                                 f"{party.name!r}; in a vertical run each column has one owner")
            seen[feature] = party.name
    if not deployment:
        _check_lr_capacity(config)


def _check_lr_capacity(config: RunConfig) -> None:
    """The secure LR's public limits against these parties (ring capacity, minimum batch rows)."""
    vertical = config.vertical
    assert vertical is not None
    lr = vertical.to_lr_config()
    widest = max(config.party_schema(p.name).width + (p.name == vertical.label_holder) for p in config.parties)
    for check in (lambda: lr.check_capacity(len(config.parties)), lambda: lr.check_batches(widest)):
        try:
            check()
        except ValueError as exc:
            field = next((f for f in ("shared_weights", "batch_size", "logit_clip") if f in str(exc)), None)
            raise ValueError(f"vertical.lr{'.' + field if field else ''}: {exc}") from None


def _check_gbdt_privacy(config: RunConfig) -> None:
    """Horizontal GBDT under DP has one mechanism of its own, [privacy.gbdt] (noised histograms); the LR/MLP levels
    do not apply to trees, and its histograms are per bank (no secure aggregation for trees)."""
    privacy = config.privacy
    assert privacy is not None
    if config.model.kind != "gbdt":
        raise ValueError("privacy.gbdt applies to model.kind = 'gbdt' only")
    if privacy.gbdt is None:
        raise ValueError("model.kind = 'gbdt' under [privacy] needs [privacy.gbdt] (noised histograms and public bin "
                         "bounds)")
    stray = [name for name in ("dp1", "dp2", "dp3") if getattr(privacy, name) is not None]
    if stray:
        raise ValueError(f"privacy.{stray[0]} does not apply to model.kind = 'gbdt' (trees are not trained by "
                         "gradient steps): use [privacy.gbdt] alone")
    bounds = privacy.gbdt.bounds
    unbounded = [f.name for f in (config.schema_.features if config.schema_ is not None else ())
                 if f.kind in ("float", "int") and f.bounds is None and f.name not in bounds and "*" not in bounds]
    if unbounded:
        raise ValueError(f"privacy.gbdt.bounds has no public range for {unbounded}: add them (or a '*' default) or "
                         "declare bounds in [schema]; under DP bin edges never come from the banks' rows")


def _check_missing(config: RunConfig) -> None:
    """Declared missing-value policies against the run's models and privacy (`check_run_policies`)."""
    from sampan.data.missing import check_run_policies

    models = list(config.vertical.models) if config.vertical is not None else [str(config.model.kind)]
    private = config.privacy is not None
    if config.vertical is not None:  # vertical DP: WOE counts or GBDT partner histograms (review R13-VIMP-1)
        scorecard, trees = getattr(config.vertical, "scorecard", None), getattr(config.vertical, "gbdt_privacy", None)
        private = bool(getattr(scorecard, "dp_epsilon", None) or getattr(trees, "hist_noise", 0.0))
    check_run_policies(config.schema_, workflow=config.workflow, models=models, private=private)


def _check_privacy(config: RunConfig) -> None:
    privacy, secagg = config.privacy, config.secure_aggregation
    if privacy is not None and (config.model.kind == "gbdt" or privacy.gbdt is not None):
        _check_gbdt_privacy(config)
        return
    if privacy is not None and not (privacy.dp1 or privacy.dp2 or privacy.dp3):
        raise ValueError(
            "[privacy] sets a budget but no mechanism: add [privacy.dp1], [privacy.dp2] and/or [privacy.dp3]")
    for name in ("dp2", "dp3"):
        section = getattr(privacy, name, None) if privacy else None
        if section is not None and section.noise_multiplier != "auto" and section.noise_multiplier <= 0:
            raise ValueError(f"privacy.{name}.noise_multiplier must be > 0 or 'auto'")
        if section is not None and section.schedule and min(section.schedule) <= 0:
            raise ValueError(f"privacy.{name}.schedule factors must be > 0")
    if privacy is not None and config.data.standardize and privacy.dp1 is None:
        raise ValueError("privacy: data.standardize = true needs [privacy.dp1] (public bounds per feature) so the "
                         "standardisation statistics are clipped, noised and charged; or set data.standardize = false")
    if privacy is not None and privacy.dp3 is not None and config.strategy.aggregator != "mean":
        raise ValueError("privacy.dp3 replaces the aggregator with a noisy mean; set strategy.aggregator = 'mean'")
    if secagg is not None and secagg.enabled and config.strategy.aggregator != "mean":
        raise ValueError("secure_aggregation hides individual updates; robust aggregators need them: "
                         "set strategy.aggregator = 'mean'")
    dp3 = privacy.dp3 if privacy else None
    if dp3 is not None and dp3.mode == "distributed" and not (secagg is not None and secagg.enabled):
        raise ValueError("privacy.dp3.mode = 'distributed' needs [secure_aggregation]: without it the coordinator "
                         "sees each party's update with only 1/sqrt(m) of the noise; add [secure_aggregation] or "
                         "set privacy.dp3.mode = 'central'")
    if secagg is not None and secagg.enabled and dp3 is not None and dp3.mode != "distributed":
        raise ValueError("with secure_aggregation the coordinator only sees the sum, so DP3 noise must come "
                         "from the parties: set privacy.dp3.mode = 'distributed'")
