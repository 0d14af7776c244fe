"""What a vertical run needs from its config, read through small accessors.

The run config's dialect is being unified (`sampan.config`); the vertical workflow and capability read
it only through `job_of` and `load_tables`, so a renamed field is a one-line fix here. A `VerticalJob`
is also what the demo builds directly (the built-in consortium has no files) and what a resumed run
rebuilds from its stored config (`VerticalJob.to_dict` / `job_of(mapping)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sampan.data.table import PartyData
from sampan.models.gbdt import GBDTParams
from sampan.vertical.training import VerticalLRConfig

__all__ = ["VerticalJob", "job_of", "load_tables", "MODELS", "CONSORTIUM_PARTIES"]

MODELS = ("lr", "scorecard", "gbdt")
# the built-in consortium's vertical view (`sampan.data.make_sme_consortium(...).vertical`), label holder first
CONSORTIUM_PARTIES = ("bank", "payments", "delivery")


@dataclass(frozen=True)
class VerticalJob:
    """One vertical run: who holds the labels, which models, their settings and the noise plans."""

    name: str
    label_holder: str
    partners: tuple[str, ...]
    models: tuple[str, ...] = ("lr",)
    lr: VerticalLRConfig = field(default_factory=VerticalLRConfig)
    gbdt: GBDTParams = field(default_factory=lambda: GBDTParams(n_trees=60, max_depth=3))
    woe_dp_epsilon: float | None = None      # DP on the federated WOE counts (None: exact counts)
    woe_dp_delta: float = 1e-5
    gbdt_hist_noise: float = 0.0             # Gaussian sigma on partner histograms (0: exact)
    applicants: tuple[str, ...] = ()         # applications the bank scores at the end of training
    budget: tuple[float, float] | None = None  # per-party (epsilon, delta) the run's ledger may spend
    source: dict[str, Any] = field(default_factory=dict)  # data binding of a simulation (e.g. the consortium)
    seed: int | None = None                  # the run's seed (None: a fresh one)
    report_dir: str | None = None            # where the runner writes the report (None: none)
    test_fraction: float = 0.2               # [vertical] test_fraction / val_fraction: the aligned rows' split
    val_fraction: float = 0.15               # (the first run on a dataset pins it in the parties' row books)
    test_ids: str | None = None              # [vertical] test_ids: the bank's explicit test customers (a CSV)
    scorecard_monotone: bool = True          # [vertical.scorecard] monotone: monotone WOE bins and the sign rule
    psi_backend: str = "ecdh"                # [vertical] psi_backend: "ecdh" (default) or "rr22" (spu, opt-in)

    @property
    def run(self) -> Any:
        """The `[run]` view the runner reads (name, seed, workflow, report_dir), so a job is a run config."""
        from types import SimpleNamespace

        return SimpleNamespace(name=self.name, seed=self.seed, workflow="vertical", report_dir=self.report_dir)

    def __post_init__(self) -> None:
        if not self.partners:
            raise ValueError("a vertical run needs at least one partner besides the label holder")
        if self.label_holder in self.partners:
            raise ValueError(f"{self.label_holder!r} is both the label holder and a partner")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or "lr" not in self.models:
            raise ValueError(f"vertical models must include 'lr' and be among {MODELS}, got {list(self.models)}")

    @property
    def parties(self) -> list[str]:
        return [self.label_holder, *self.partners]

    def to_dict(self) -> dict[str, Any]:
        """JSON for the run store: a resumed run rebuilds the same job with `job_of`."""
        out = asdict(self)
        out["lr"], out["gbdt"] = dict(self.lr.__dict__), dict(self.gbdt.__dict__)
        out["partners"], out["models"] = list(self.partners), list(self.models)
        out["applicants"] = list(self.applicants)
        out["budget"] = list(self.budget) if self.budget else None
        return {"vertical_job": out, **({"source": dict(self.source)} if self.source else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerticalJob:
        d = dict(data["vertical_job"])
        return cls(name=str(d["name"]), label_holder=str(d["label_holder"]), partners=tuple(d["partners"]),
                   models=tuple(d["models"]), lr=VerticalLRConfig(**d["lr"]), gbdt=GBDTParams(**d["gbdt"]),
                   woe_dp_epsilon=d.get("woe_dp_epsilon"), woe_dp_delta=float(d.get("woe_dp_delta", 1e-5)),
                   gbdt_hist_noise=float(d.get("gbdt_hist_noise", 0.0)), applicants=tuple(d.get("applicants") or ()),
                   budget=tuple(d["budget"]) if d.get("budget") else None,
                   source=dict(data.get("source") or d.get("source") or {}), seed=d.get("seed"),
                   report_dir=d.get("report_dir"), test_fraction=float(d.get("test_fraction", 0.2)),
                   val_fraction=float(d.get("val_fraction", 0.15)), test_ids=d.get("test_ids"),
                   scorecard_monotone=bool(d.get("scorecard_monotone", True)),
                   psi_backend=str(d.get("psi_backend", "ecdh")))


def _parsed(config: Mapping[str, Any]) -> Any:
    """A stored config dict: the unified `sampan.config.RunConfig`, or the older `[vertical] parties` dialect."""
    if isinstance((config.get("vertical") or {}), Mapping) and "parties" in (config.get("vertical") or {}):
        from sampan.vertical.config import VerticalRunConfig

        return VerticalRunConfig.model_validate(dict(config))
    from sampan.config import parse_config

    return parse_config(dict(config), source="stored vertical config")


def _section_parties(config: Any) -> list[Any]:
    """The [[parties]] of a run (unified dialect) or [[vertical.parties]] (older dialect)."""
    return list(getattr(config.vertical, "parties", None) or getattr(config, "parties", None) or [])


def job_of(config: Any) -> VerticalJob:
    """The vertical job of a run config: a `VerticalJob`, its stored dict, or a run config with [vertical]."""
    if isinstance(config, VerticalJob):
        return config
    if isinstance(config, Mapping):
        if "vertical_job" in config:
            return VerticalJob.from_dict(config)
        config = _parsed(config)
    section = config.vertical
    if section is None:
        raise ValueError(f"run {config.run.name!r} has no [vertical] section")
    holder = str(section.label_holder)
    names = [str(p.name) for p in _section_parties(config)]
    source = getattr(config, "source", None)
    if not names and getattr(source, "kind", None) == "consortium":
        names = list(CONSORTIUM_PARTIES)
    lr = section.to_lr_config() if hasattr(section, "to_lr_config") else config.lr_config()
    gbdt = section.gbdt_params() if hasattr(section, "gbdt_params") else config.gbdt_params()
    scorecard, gbdt_privacy = getattr(section, "scorecard", None), getattr(section, "gbdt_privacy", None)
    binding = source.model_dump(mode="json") if source is not None and hasattr(source, "model_dump") else {}
    if binding:
        binding.setdefault("seed", int(getattr(config.run, "seed", 0) or 0))
    return VerticalJob(
        name=str(config.run.name), label_holder=holder, partners=tuple(n for n in names if n != holder),
        models=tuple(section.models), lr=lr, gbdt=gbdt, woe_dp_epsilon=getattr(scorecard, "dp_epsilon", None),
        gbdt_hist_noise=float(getattr(gbdt_privacy, "hist_noise", 0.0) or 0.0),
        applicants=tuple(str(a) for a in getattr(section, "applicants", ()) or ()),
        source=binding, test_fraction=float(getattr(section, "test_fraction", 0.2)),
        val_fraction=float(getattr(section, "val_fraction", 0.15)), test_ids=getattr(section, "test_ids", None),
        scorecard_monotone=bool(getattr(scorecard, "monotone", True)),
        psi_backend=str(getattr(section, "psi_backend", "ecdh")))


def load_tables(config: Any) -> dict[str, PartyData]:
    """Every party's table of a simulated run, label holder first (each loaded and checked as that party would)."""
    job = job_of(config)
    if isinstance(config, Mapping) and "vertical_job" not in config:
        config = _parsed(config)
    if job.source.get("kind") == "consortium":
        from sampan.data import make_sme_consortium

        tables = dict(make_sme_consortium(int(job.source["n_smes"]), seed=int(job.source.get("seed", 0))).vertical)
    elif hasattr(config, "vertical"):  # a run config: each party's table from its path and columns
        from sampan.vertical.config import load_vertical_parties

        tables = load_vertical_parties(config)
    else:
        raise ValueError(f"vertical run {job.name!r} names no data binding (source) to load its tables from")
    missing = [p for p in job.parties if p not in tables]
    if missing:
        raise ValueError(f"vertical run {job.name!r}: no table for parties {missing} (have {sorted(tables)})")
    return {p: tables[p] for p in job.parties}
