"""Party-side tables: CSV/Parquet loaders with schema checks, public datasets, partitioners, consortium generator.

May import: sampan.compute, sampan.errors, sampan.files (and numpy, pyarrow; sqlalchemy only in sql_source).
Data never leaves the party that loaded it.
"""

from sampan.data.consortium import Consortium, make_sme_consortium
from sampan.data.loaders import from_columns, load_table
from sampan.data.partition import dirichlet_label_partition, iid_partition, quantity_skew_partition
from sampan.data.public import (
    load_german_credit,
    load_south_german_credit,
    load_taiwan_default,
    shared_data_dir,
)
from sampan.data.table import ColumnSpec, DataValidationError, PartyData, TableSchema

__all__ = [
    "ColumnSpec",
    "Consortium",
    "DataValidationError",
    "PartyData",
    "TableSchema",
    "dirichlet_label_partition",
    "from_columns",
    "iid_partition",
    "load_german_credit",
    "load_south_german_credit",
    "load_table",
    "load_taiwan_default",
    "make_sme_consortium",
    "quantity_skew_partition",
    "shared_data_dir",
]
