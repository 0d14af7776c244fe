"""What a federated synthesis run needs from its config, read from the one run config's ``[synthesis]``.

Accepted sources: a `SynthesisSettings`; the run config (`sampan.config.RunConfig`: its ``[synthesis]``
section, the domain from its ``[schema]`` via `SynthSchema.from_table`, or the built-in SME schema for
``[source] kind = "consortium"``); or a mapping with a ``synthesis`` table (the TOML as read, which may
name its ``schema`` itself). The run config's names (``secure_sum``, ``n_rows``, ``out``) and this
module's (``secure_aggregation``, ``rows``, ``model_dir``) are both read. Errors name the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampan.synth.fit import SynthConfig
from sampan.synth.schema import SchemaError, SynthSchema, load_schema

if TYPE_CHECKING:
    from sampan.config import SynthesisSection

__all__ = ["BUILTIN_SCHEMAS", "SynthesisSettings", "resolve_schema", "synth_config_of"]

BUILTIN_SCHEMAS = ("sme", "taiwan", "german")
_FIELDS = {"schema", "epsilon", "delta", "secure_aggregation", "tree", "rows", "output", "model_name", "parties",
           "reproducible", "max_bins", "model_dir"}
_ALIASES = {"secure_sum": "secure_aggregation", "n_rows": "rows", "out": "model_dir"}  # the run config's names


def resolve_schema(value: Any, where: str = "synthesis.schema") -> SynthSchema:
    """A schema object, its dict, a built-in name (sme, taiwan, german) or a TOML/JSON schema file."""
    if isinstance(value, SynthSchema):
        return value
    if isinstance(value, Mapping):
        return SynthSchema.from_dict(value, where)
    if not isinstance(value, (str, Path)) or not str(value):
        raise SchemaError(f"{where}: give a schema file (TOML/JSON) or one of {list(BUILTIN_SCHEMAS)}")
    if str(value) in BUILTIN_SCHEMAS:
        from sampan.synth import demo
        return {"sme": demo.SME_SYNTH_SCHEMA, "taiwan": demo.TAIWAN_SYNTH_SCHEMA,
                "german": demo.GERMAN_SYNTH_SCHEMA}[str(value)]
    return load_schema(value)


def synth_config_of(section: SynthesisSection) -> SynthConfig:
    """The fitter's settings from the run config's ``[synthesis]`` section; the domain is
    `SynthSchema.from_table([schema])`. Here rather than on the section: config sits below synth."""
    return SynthConfig(epsilon=section.epsilon, delta=section.delta, max_bins=section.max_bins, tree=section.tree)


@dataclass(frozen=True)
class SynthesisSettings:
    """``secure_aggregation``: SecAgg+ with distributed noise (needs >= 3 parties), else each release DP on its
    own; ``rows``: synthetic rows to sample (default: the noisy row count); ``output``: CSV path for them;
    ``model_dir``: where the coordinator saves the model folder; ``output``: the synthetic CSV (default: beside
    the model folder); ``reproducible``: seed the noise from the run seed (tests/demos only: NOT private)."""

    schema: SynthSchema
    epsilon: float
    delta: float = 1e-5
    secure_aggregation: bool = True
    tree: bool | None = None
    rows: int | None = None
    output: str | None = None
    model_dir: str | None = None
    max_bins: int = 32
    model_name: str = "synthesis"
    parties: tuple[str, ...] = ()
    reproducible: bool = False

    def __post_init__(self) -> None:
        if self.rows is not None and (isinstance(self.rows, bool) or int(self.rows) < 1):
            raise ValueError(f"synthesis.rows must be a positive integer, got {self.rows!r}")
        self.synth_config()  # validates epsilon and delta, naming the field

    def synth_config(self) -> SynthConfig:
        try:
            return SynthConfig(epsilon=float(self.epsilon), delta=float(self.delta), tree=self.tree,
                               max_bins=int(self.max_bins))
        except ValueError as exc:
            raise ValueError(f"synthesis: {exc}") from None

    def job(self) -> dict[str, Any]:
        """What each party accepts (and checks requests against): budget, mode and schema."""
        return {"epsilon": self.epsilon, "delta": self.delta, "secure_aggregation": self.secure_aggregation,
                "schema": self.schema.to_dict()}

    @classmethod
    def from_section(cls, section: Mapping[str, Any], schema: Any = None) -> SynthesisSettings:
        section = {_ALIASES.get(k, k): v for k, v in section.items()}
        if section.get("schema") is None and schema is not None:
            section["schema"] = schema
        unknown = set(section) - _FIELDS
        if unknown:
            raise ValueError(f"synthesis: unknown field(s) {sorted(unknown)} (known: {sorted(_FIELDS)})")
        for name in ("schema", "epsilon"):
            if section.get(name) is None:
                raise ValueError(f"synthesis.{name} is required")
        values = {k: v for k, v in section.items() if v is not None}
        values["schema"] = resolve_schema(values["schema"])
        if "parties" in values:
            values["parties"] = tuple(str(p) for p in values["parties"])
        return cls(**values)

    @classmethod
    def from_config(cls, config: Any) -> SynthesisSettings:
        if isinstance(config, SynthesisSettings):
            return config
        section = config.get("synthesis") if isinstance(config, Mapping) else getattr(config, "synthesis", None)
        if section is None:
            raise ValueError("run.workflow = 'synthesis' needs a [synthesis] section (schema, epsilon, ...)")
        if hasattr(section, "model_dump"):
            section = section.model_dump()
        return cls.from_section(dict(section), _config_schema(config))


def _config_schema(config: Any) -> Any:
    """The run config's domain: [schema] (a TableSchema; numeric features with public bounds), or the built-in
    SME schema when the parties are the built-in consortium; None when neither applies."""
    table_schema = getattr(config, "schema_", None) if not isinstance(config, Mapping) else None
    if table_schema is not None:
        return SynthSchema.from_table(table_schema, "schema")
    source = config.get("source") if isinstance(config, Mapping) else getattr(config, "source", None)
    kind = source.get("kind") if isinstance(source, Mapping) else getattr(source, "kind", None)
    return "sme" if kind == "consortium" else None
