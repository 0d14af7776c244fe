"""Differentially private synthetic tables (central and federated), programmable statistics, evaluation.

May import: sampan.config, sampan.privacy, sampan.report, sampan.data, sampan.metrics, sampan.models, sampan.crypto,
sampan.core, sampan.wire, sampan.errors, sampan.files (and numpy, scipy, pyarrow; no JAX/torch). No transport or store.
"""

from sampan.synth.budget import BudgetWeights
from sampan.synth.constraints import Constraint, ConstraintError, parse_constraint
from sampan.synth.domain import IdentifierColumnError, release_domain
from sampan.synth.fit import SynthConfig, fit_synthesizer, fit_undeclared
from sampan.synth.model import ModelError, SynthModel
from sampan.synth.programmable import SampleReport, TargetError, TargetMarginal, generate
from sampan.synth.schema import SchemaError, SynthColumn, SynthSchema, load_schema
from sampan.synth.table import TableError, read_csv_table, table_from_party_data, validate_table, write_csv_table
from sampan.synth.workflow import SynthesisWorkflow, fit_federated

__all__ = [
    "BudgetWeights",
    "Constraint",
    "ConstraintError",
    "IdentifierColumnError",
    "ModelError",
    "SampleReport",
    "SchemaError",
    "SynthColumn",
    "SynthConfig",
    "SynthModel",
    "SynthSchema",
    "SynthesisWorkflow",
    "TableError",
    "TargetError",
    "TargetMarginal",
    "fit_federated",
    "fit_synthesizer",
    "generate",
    "fit_undeclared",
    "release_domain",
    "load_schema",
    "parse_constraint",
    "read_csv_table",
    "table_from_party_data",
    "validate_table",
    "write_csv_table",
]
