"""Differentially private synthetic tables (central and federated), programmable statistics, evaluation.

May import: numpy, scipy, pyarrow, sampan.privacy, sampan.data, sampan.metrics, sampan.report. No JAX/torch.
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
