"""The Iceberg column statistics of a written Parquet data file, computed where the file is written.

An Iceberg snapshot records, for each data file, its value, null and NaN counts, column sizes,
lower and upper bounds (by field id) and split offsets; readers prune files with them. pyiceberg
derives them from the file's Parquet footer (``compute_statistics_plan``,
``parquet_path_to_id_mapping``, ``data_file_statistics_from_parquet_metadata``). The writer that
closes a file calls those same functions with the footer in hand (a local worker, a shard task on
Spark, Glue or EMR Serverless) and hands back only their result, as JSON: the one committer builds
its DataFiles from it and never sees a footer. Done on the committer, this was 93% of a commit's
CPU (2.6 ms a file), and a shard's result carried 18 KiB of footer per file through the Spark
driver (bench/README.md, "Scale: shards on Spark, projected").

The statistics plan comes from the schema the file was written with (its Iceberg field ids, in
``PARQUET:field_id``) and the table's ``write.metadata.metrics.*`` properties, as they were when the
run was planned (lake/writer.py: ``FileTarget.metrics``).

Why statistics made at write time stay valid at the commit, whatever another run did meanwhile
(lake/commit.py ``merge_schema``): they are keyed by field id, and a field id never changes its
meaning (a commit that would is refused). Columns another run added are not in this file: the
table's schema at commit holds them, but no statistics for them, exactly as the committer would
have computed from the footer. A decimal the commit widens keeps its bounds: Iceberg stores a
decimal bound as its unscaled value in the fewest bytes, independent of the precision. A metrics
property changed between plan and commit (by another engine) applies to files written after it;
the statistics recorded here are true either way (a mode only decides how much is kept).
"""

from __future__ import annotations

from binascii import a2b_base64, b2a_base64
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

METRICS_PREFIX = "write.metadata.metrics."  # the table properties that steer which statistics are kept
# The maps of a DataFile's statistics, keyed by field id; bounds are bytes (base64 in JSON).
COUNTS = ("column_sizes", "value_counts", "null_value_counts", "nan_value_counts")
BOUNDS = ("lower_bounds", "upper_bounds")

Statistics = dict[str, Any]  # the JSON form: see ``statistics_of``


def metrics_properties(properties: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``write.metadata.metrics.*`` entries of a table's ``properties``, sorted (hashable, and
    what a shard spec carries)."""
    return tuple(sorted((k, v) for k, v in properties.items() if k.startswith(METRICS_PREFIX)))


class StatisticsPlan:
    """What pyiceberg needs to turn footers of files of one schema into statistics: built once per
    writer (its cost is per schema, not per file)."""

    def __init__(self, schema: pa.Schema, metrics: Iterable[tuple[str, str]] = ()):
        """``schema``: the files' Arrow schema, every field carrying its Iceberg field id
        (``PARQUET:field_id``; ValueError otherwise); ``metrics``: ``metrics_properties``."""
        from pyiceberg.io.pyarrow import compute_statistics_plan, parquet_path_to_id_mapping, pyarrow_to_schema

        self.schema = pyarrow_to_schema(schema)
        self._plan = compute_statistics_plan(self.schema, dict(metrics))
        self._mapping = parquet_path_to_id_mapping(self.schema)

    def statistics_of(self, footer: pq.FileMetaData) -> Statistics:
        """The footer's statistics as JSON: ``record_count`` and ``split_offsets`` as pyiceberg
        gives them, the count maps (``column_sizes`` in bytes, ``value_counts``,
        ``null_value_counts``, ``nan_value_counts``) and the bounds (``lower_bounds``,
        ``upper_bounds``: Iceberg's single-value serialization, base64) keyed by the field id as
        text."""
        from pyiceberg.io.pyarrow import data_file_statistics_from_parquet_metadata

        found = data_file_statistics_from_parquet_metadata(parquet_metadata=footer, stats_columns=self._plan,
                                                           parquet_column_mapping=self._mapping).to_serialized_dict()
        out: Statistics = {"record_count": found["record_count"], "split_offsets": list(found["split_offsets"] or [])}
        for name in COUNTS:
            out[name] = {str(k): v for k, v in found[name].items()}
        for name in BOUNDS:
            out[name] = {str(k): b2a_base64(v, newline=False).decode("ascii") for k, v in found[name].items()}
        return out


def data_file_fields(statistics: Statistics) -> dict[str, Any]:
    """``statistics_of``'s JSON as the keyword arguments of pyiceberg's ``DataFile.from_args``
    (field ids as ints, bounds as bytes). Raises KeyError or ValueError for a malformed document."""
    out: dict[str, Any] = {"record_count": statistics["record_count"],
                           "split_offsets": list(statistics["split_offsets"])}
    for name in COUNTS:
        out[name] = {int(k): v for k, v in statistics[name].items()}
    for name in BOUNDS:  # binascii: base64.b64decode costs several times more, on the committer's one core
        out[name] = {int(k): a2b_base64(v) for k, v in statistics[name].items()}
    return out


__all__ = ["METRICS_PREFIX", "Statistics", "StatisticsPlan", "data_file_fields", "metrics_properties"]
