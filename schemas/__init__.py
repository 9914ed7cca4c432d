"""Data contracts: the pyarrow schema of every table Sluice writes.

Spark struct types (`schemas.spark`) and JSON Schema files (`schemas/json/`) are generated from these,
never written by hand. Importing this package imports pyarrow only.
"""

from schemas.registry import SCHEMA_VERSION, TABLES, get_schema

__all__ = ["SCHEMA_VERSION", "TABLES", "get_schema"]
