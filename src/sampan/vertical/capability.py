"""The vertical capabilities: VERTICAL (align, train, compare) and SCORING (score applications jointly).

Both use the same party side (`VerticalParty`), built from a `sampan.core.PartySetup` by
`vertical_party` in the simulation and in a deployed agent alike. The `PartySetup` fields used:

* ``data``      the party's table (`sampan.data.PartyData`); ``data.y`` only at the label holder.
* ``identity``  its `PartyIdentity` (signs its run keys). Required.
* ``verifier``  the consortium CA verifier; an agent passes it narrowed to the job's partners and label
                holder (`sampan.deploy.allow.PeerAllowList`). Required.
* ``policy``    its `PartyPrivacyPolicy` (noise floor, DP required on WOE/GBDT, its own ledger); default
                a permissive in-memory policy (simulation).
* ``state_dir`` where secure-LR instances persist (``<state_dir>/vertical-lr``) and, without an
                ``options["row_book"]``, the row book (``<state_dir>/vertical-rows.json``); None: memory.
* ``registry``  where the party registers its own model parts and the bank its scoring results (a
                `sampan.runtime.store.Store`, or anything with register_model / models_for_run). A
                simulation may pass the run's store (names ``<model>:<party>`` keep parts apart).
* ``deployed``  an agent: the insecure plaintext baselines are refused whatever the options say.
* ``options``   ``row_book`` (a shared `RowBook`: an agent keeps one per dataset and label holder),
                ``max_evaluations``, ``psi_workers`` (1 in an agent: no fork beside gRPC threads) and
                ``with_baselines`` (simulation benchmarks only: the INSECURE ``plr.*`` handlers) and, at the
                label holder, ``test_ids`` (a CSV of its explicit test customers, read here at the bank),
                ``split_key`` (the bank's secret split key, one per bank; else ``<state_dir>/vertical-split-key``)
                and ``max_test_fraction`` (the largest test share a coordinator may ask).

Party state for a run (channels, alignment, parts) lives in the `VerticalParty` the agent keeps for
that run id, so it survives a coordinator restart but not a party restart (see `VerticalWorkflow`).

What each role learns: as in `sampan.vertical.workflow` (training) and `ScoringWorkflow` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sampan.core.capability import PartySetup
from sampan.core.party import PartyApp
from sampan.core.workflow import RunContext, Workflow, WorkflowResult
from sampan.data.missing import impute_locally, table_fill_values
from sampan.vertical.applicants import ApplicantsPolicy
from sampan.vertical.bank_splits import SPLIT_KEY_FILE, load_split_key
from sampan.vertical.gbdt import score_vertical_gbdt
from sampan.vertical.job import job_of, load_tables
from sampan.vertical.party import VerticalParty
from sampan.vertical.party_parts import read_test_ids, scores_name
from sampan.vertical.session import VerticalSession
from sampan.vertical.workflow import VerticalWorkflow

__all__ = ["VERTICAL", "SCORING", "ScoringJob", "ScoringWorkflow", "scoring_job_of", "vertical_party",
           "simulate_vertical"]


def vertical_party(setup: PartySetup) -> VerticalParty:
    """One party's side of a vertical or scoring job, from its setup (see the module docstring)."""
    options = dict(setup.options)
    if setup.deployed and options.get("with_baselines"):
        raise ValueError(f"party {setup.name!r}: a deployed party never serves the insecure plaintext baselines")
    state = Path(setup.state_dir) if setup.state_dir is not None else None
    kwargs: dict[str, Any] = {}
    if "max_evaluations" in options:
        kwargs["max_evaluations"] = int(options["max_evaluations"])
    if "max_test_fraction" in options:
        kwargs["max_test_fraction"] = float(options["max_test_fraction"])
    # missing values: each party fills its own columns from its own rows (nothing leaves; `impute_locally`), from
    # public bounds only where the job announced vertical DP or its policy requires it (review R13-VIMP-1)
    filled = impute_locally(setup.data, public=vertical_dp(setup), values=setup.data.fill_values)
    party = VerticalParty(filled, identity=setup.identity, verifier=setup.verifier, policy=setup.policy,
                          with_baselines=bool(options.get("with_baselines", False)),
                          lr_state=state / "vertical-lr" if state else None,
                          rows_state=state / "vertical-rows.json" if state and "row_book" not in options else None,
                          row_book=options.get("row_book"), registry=setup.registry,
                          test_ids_file=_test_ids_file(setup.name, options.get("test_ids")),
                          split_key=_split_key(options, state),
                          **kwargs)
    if "psi_workers" in options:
        party.psi.workers = int(options["psi_workers"])
    party.records.unfilled = setup.data  # a loaded model part refills from it with its recorded values
    party.scoring.applicants = party.gbdt.applicants = _applicants_policy(setup, options)
    return party


def _applicants_policy(setup: PartySetup, options: dict[str, Any]) -> ApplicantsPolicy:
    """The applicants files this bank may read (review R13-SCO-1): deployed, inside its `[allow] applicants_dir`
    (none declared: no file); in a simulation, the one file its own operator named; never its schema columns as ids."""
    schema = options.get("table_schema")
    label = getattr(schema, "label", None) or getattr(schema, "label_column", None)
    protected = (*setup.data.feature_names, *([str(label)] if label else []))
    columns = options.get("applicants_id_columns")
    return ApplicantsPolicy(folder=options.get("applicants_dir"), files=tuple(options.get("applicants_files") or ()),
                            id_columns=tuple(columns) if columns is not None else None, protected=protected)


def _test_ids_file(party: str, path: str | None) -> str | None:
    """The bank's test file, read once here so a missing or empty one fails at setup (`bank_splits` checks its ids
    against the aligned customers at first use, before anything is pinned)."""
    if path:
        read_test_ids(party, path)
    return path or None


def _split_key(options: dict[str, Any], state: Path | None) -> Any:
    """The bank's secret split key: the agent's (one per bank, all datasets), else in this party's state folder
    (made at first use), else None (derived from the bank's own table, `bank_splits`)."""
    if options.get("split_key") is not None:
        return options["split_key"]
    return (lambda: load_split_key(state / SPLIT_KEY_FILE)) if state is not None else None


def vertical_dp(setup: PartySetup) -> bool:
    """Whether this party's vertical histograms (WOE counts, GBDT partner histograms) are under DP: the job it
    accepted announced it, or its own policy requires a DP level. Then its missing cells get public fills."""
    announced = set(setup.job.get("protections") or ()) & {"dp", "woe_dp", "gbdt_dp"}
    return bool(announced) or bool(setup.policy is not None and setup.policy.requires_dp())


def _protections(job: Any) -> list[str]:
    """The vertical DP a simulated job announces to its parties (as a deployed job description does)."""
    return [*(["woe_dp"] if job.woe_dp_epsilon else []), *(["gbdt_dp"] if job.gbdt_hist_noise > 0 else [])]


def simulate_vertical(config: Any, seed: int, *, registry: Any = None, with_baselines: bool = False
                      ) -> dict[str, PartySetup]:
    """Every party's setup of a simulated vertical (or scoring) run: its own table, one certificate each from a
    fresh simulated consortium CA, memory-only state. `registry`: the store each party registers its parts in
    (the runner passes its store). The seed plays no part: splits are pinned by the parties' row books."""
    from sampan.crypto.simulated_ca import simulated_consortium

    tables = load_tables(config)
    job = job_of(config)
    verifier, identities = simulated_consortium(list(tables))
    described = {"workflow": "vertical", "parties": job.parties, "label_holder": job.label_holder,
                 "protections": _protections(job)}
    def options(name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"with_baselines": with_baselines} if with_baselines else {}
        if job.test_ids and name == job.label_holder:
            out["test_ids"] = job.test_ids
        return out

    return {name: PartySetup(name, data, described, identity=identities[name], verifier=verifier, registry=registry,
                             options=options(name))
            for name, data in tables.items()}


@dataclass(frozen=True)
class _VerticalCapability:
    name: str = "vertical"

    def workflow(self, config: Any) -> Workflow:
        return VerticalWorkflow()

    def party_app(self, setup: PartySetup) -> PartyApp:
        return vertical_party(setup).app

    def party(self, setup: PartySetup) -> VerticalParty:
        """The party object itself (simulation helpers and tests inspect it; a workflow never does)."""
        return vertical_party(setup)

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        return simulate_vertical(config, seed)


# --- joint scoring -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoringJob:
    """Score applications with a finished vertical run's model: each party loads its own registered part."""

    model_run: str                  # the vertical run whose parts score
    label_holder: str
    partners: tuple[str, ...]
    applicants: tuple[str, ...]
    kind: str = "lr"                # "lr", "scorecard" or "gbdt"
    name: str = "scoring"
    training: Mapping[str, Any] | None = None  # the trained run's stored config (its data binding, in simulation)
    applicants_file: str | None = None  # instead of `applicants`: a CSV at the bank, read by the bank alone
    id_column: str | None = None        # its id column (default: the file's first column)

    @property
    def parties(self) -> list[str]:
        return [self.label_holder, *self.partners]

    @property
    def run(self) -> Any:
        """The `[run]` view the runner reads: a scoring run writes no report (its results are the bank's)."""
        from types import SimpleNamespace

        return SimpleNamespace(name=self.name, seed=0, workflow="scoring", report_dir=None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("model_run", "label_holder", "kind", "name", "applicants_file", "id_column")}
        return {"scoring_job": {**d, "partners": list(self.partners), "applicants": list(self.applicants),
                                "training": dict(self.training) if self.training else None}}


def scoring_job_of(config: Any) -> ScoringJob:
    if isinstance(config, ScoringJob):
        return config
    if isinstance(config, Mapping) and "scoring_job" in config:
        d = dict(config["scoring_job"])
        return ScoringJob(str(d["model_run"]), str(d["label_holder"]), tuple(d["partners"]), tuple(d["applicants"]),
                          str(d.get("kind", "lr")), str(d.get("name", "scoring")), d.get("training"),
                          d.get("applicants_file"), d.get("id_column"))
    section = getattr(config, "scoring", None)
    if section is not None:  # a run config with [scoring] (the trained run) and [vertical] / [[parties]] (who)
        trained = job_of(config)
        return ScoringJob(model_run=str(section.model), label_holder=trained.label_holder, partners=trained.partners,
                          applicants=tuple(str(a) for a in section.applicants),
                          kind=str(getattr(section, "kind", "lr") or "lr"), name=str(config.run.name),
                          training=config.to_dict() if hasattr(config, "to_dict") else None,
                          applicants_file=getattr(section, "applicants_file", None),
                          id_column=getattr(section, "id_column", None))
    raise ValueError("a scoring run needs a [scoring] section (the trained vertical run and the applicants) and the "
                     "parties ([vertical] label_holder, [[parties]])")


class ScoringWorkflow(Workflow):
    """Fresh run keys, each party loads its own part, one joint scoring request; the bank keeps the scores.

    What each role learns: the coordinator learns the parties, the request id and how many applications
    were scored (never a score or a PD); the bank learns each applicant's score and reasons (kept in its
    registry as ``<name>-scores:<bank>``); a partner learns which of its customers were asked about
    (`sampan.vertical.scoring`, GBDT: `sampan.vertical.gbdt`)."""

    name = "scoring"

    def run(self, ctx: RunContext) -> WorkflowResult:
        job = scoring_job_of(ctx.config)
        if not job.applicants and not job.applicants_file:
            raise ValueError("no applicants to score")
        session = VerticalSession(ctx.transport, label_holder=job.label_holder, partners=list(job.partners),
                                  run_id=ctx.run_id)
        ctx.progress("stage", {"stage": "connecting (signed run keys)"})
        session.connect()
        relay = session.relay
        relay.wave(ctx.transport, (relay.request(p, "vertical.load_model", meta={
            "model_run": job.model_run, "kind": job.kind}) for p in job.parties))
        ctx.check_cancelled()
        what = f"{len(job.applicants)} applications" if job.applicants else "the applications in the bank's file"
        ctx.progress("stage", {"stage": f"scoring {what}"})
        from_file = ({"applicants_file": job.applicants_file, "id_column": job.id_column}
                     if job.applicants_file and not job.applicants else None)  # the bank reads the ids; none here
        if job.kind == "gbdt":
            request = f"{ctx.run_id}/score"
            score_vertical_gbdt(ctx.transport, relay, job.label_holder, list(job.partners), request,
                                applicants=None if from_file else list(job.applicants), applicants_file=from_file)
        elif from_file:
            request = session._score({}, from_file)[1]
        else:
            request = session.score(list(job.applicants))
        reply = relay.wave(ctx.transport, [relay.request(job.label_holder, "score.save", meta={
            "requests": [request], "name": job.name})])[0]
        scored = {"request_id": request, "n": int(reply.meta["n"]), "kept_by": job.label_holder,
                  "record": scores_name(job.name, job.label_holder), "model_run": job.model_run, "kind": job.kind}
        return WorkflowResult(final_metrics={"scored": scored["n"]}, info={"scoring": scored,
                                                                           "receipt": scoring_receipt(job)},
                              outcome=scored)


def scoring_receipt(job: ScoringJob) -> dict[str, Any]:
    """What a scoring run reveals to each role (review R13-SCO-9: in the scoring run's own receipt, not only the
    training run's): partners learn which registration numbers were queried; the bank the summed partner
    contribution (LR) or every partner split's routing bit (GBDT); the coordinator counts and sizes."""
    from sampan.vertical.scoring import REVEALS

    bank = ("the bank learns each applicant's probability of default, score and reasons, which partners know the "
            + ("applicant, and every partner split's routing bit for the applicant (on which side of each partner "
               "threshold its values fall: intervals of the partner's feature values)" if job.kind == "gbdt" else
               "applicant, and the summed partner contribution to its score (with two or more partners the sum "
               "only, under pairwise masks; with one partner, that partner's exact contribution)"))
    return {
        "threat_model": "Semi-honest parties; the coordinator relays sealed envelopes it cannot open. The bank reads "
                        "only an applicants file it designated itself ([allow] applicants_dir).",
        "reveals": {
            "score.start" if job.kind != "gbdt" else "vgb.score_start":
                "each partner learns the registration number(s) queried (who applied to the bank), as with a "
                "credit-reference query" + ("; the coordinator never holds the ids (the bank reads its own file)"
                                            if job.applicants_file else "; the coordinator relayed them"),
            "score.finish" if job.kind != "gbdt" else "vgb.score_finish": bank,
            "coordinator": "the coordinator learns the parties, the request id, how many applicants were scored and "
                           "the sizes of the sealed envelopes; never a score or a PD",
            "summary": REVEALS,
        },
        "protections": {"score.start": "sealed to each partner (ids)", "score.partial": "sealed to the bank, masked",
                        "vgb.score_start": "sealed to each partner (ids)", "vgb.score_partial": "sealed to the bank"},
    }


@dataclass(frozen=True)
class _ScoringCapability:
    name: str = "scoring"

    def workflow(self, config: Any) -> Workflow:
        return ScoringWorkflow()

    def party_app(self, setup: PartySetup) -> PartyApp:
        return vertical_party(setup).app

    def simulate(self, config: Any, seed: int) -> dict[str, PartySetup]:
        job = scoring_job_of(config)
        if job.training is None:
            raise ValueError(f"scoring run {job.name!r}: the trained run's config (its data binding) is needed to "
                             "rebuild the simulated parties")
        setups = simulate_vertical(job.training, seed)
        if job.applicants_file:  # the bank's current table: its training table plus the file's rows, if it has them
            bank = setups[job.label_holder]
            schema = _party_schema(job.training, job.label_holder)
            setups[job.label_holder] = replace(bank, data=with_applicants(bank.data, job.applicants_file, schema,
                                                                          job.label_holder, job.id_column,
                                                                          public=vertical_dp(bank)),
                                               # the one file the bank's own operator named (the whole simulation)
                                               options={**bank.options, "applicants_files": [job.applicants_file]})
        return setups


def _party_schema(training: Mapping[str, Any], party: str) -> Any:
    """A party's declared schema in the trained run's stored config (file-bound parties or the built-in data)."""
    job = job_of(training)
    if job.source.get("kind") == "consortium":
        from sampan.data import make_sme_consortium

        return make_sme_consortium(int(job.source["n_smes"]), seed=int(job.source.get("seed", 0))).schema_for(party)
    from sampan.config import parse_config
    from sampan.vertical.config import legacy_to_run_dict

    return parse_config(legacy_to_run_dict(dict(training)), source="stored run config").party_schema(party)


def with_applicants(data: Any, path: str, schema: Any, party: str, id_column: str | None = None, *,
                    public: bool = False) -> Any:
    """The bank's table with the applicants file's rows appended, when the file has every one of the bank's
    feature columns (a new applicant is then scored from the file; a known one from the file's newer values,
    the later row winning the id lookup); else the table unchanged (the file gives ids only).

    Missing cells of the appended rows stay missing: the table carries the fill values the bank's own training rows
    give (its local imputation, computed before the applicants join, as at training), which the party fills them
    with, until a loaded model part refills them with the values it recorded; they carry no label (-1)."""
    import numpy as np

    from sampan.data.loaders import from_columns, read_columns

    features = [c.name for c in schema.features]
    file_schema = schema.model_copy(update={"label": None, "id": id_column or schema.id})
    columns = read_columns(path, party, string_columns=[file_schema.id])
    if not all(name in columns for name in features):
        return data
    new = from_columns({k: columns[k] for k in file_schema.columns()}, file_schema, party, path)
    fill = table_fill_values(data, public=public)  # the bank's own fill values, from its own rows (or public bounds)
    return replace(data, ids=np.concatenate([data.ids, new.ids]), X=np.vstack([data.X, new.X]),
                   y=None if data.y is None else np.concatenate([data.y, np.full(len(new.ids), -1)]),
                   fill_values=fill, trees_X=None)


VERTICAL = _VerticalCapability()
SCORING = _ScoringCapability()
