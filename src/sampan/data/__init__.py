"""Party-side tables: CSV/Parquet loaders with schema checks, public datasets, partitioners, consortium generator.

May import: numpy, pyarrow. Data never leaves the party that loaded it.
"""
