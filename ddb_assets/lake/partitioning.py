"""How a lake table is partitioned: one attribute, identity or an Iceberg transform.

``partition_by`` (YAML) and ``--partition-by`` (CLI) take one of:

- ``year``: identity on the attribute ``year`` (its column holds the value; the sample config);
- ``year(ATTR)``, ``month(ATTR)``, ``day(ATTR)``, ``hour(ATTR)``: Iceberg time transforms of a time
  held in the attribute as epoch seconds, epoch milliseconds or an ISO-8601 string. Iceberg
  transforms only apply to timestamp columns, so the table gets a derived column ``<attr>__ts``
  (timestamptz, UTC) next to the attribute's own column, which keeps the value as it was; the unit
  is told from the values (``N`` of up to 11 integer digits: seconds; 12-14: milliseconds;
  ``S``: ISO-8601) or given: ``month(created_at, epoch_millis)``;
- ``bucket(N, ATTR)``: Iceberg's hash bucket of the attribute's column into N buckets.

Items without the attribute (or whose value is not of the partitioning column's type, or not a
time) go to the null partition, which every engine reads. The partition *name* of a key (Dagster
partition keys, ``--partitions``) is Iceberg's human string (``2015``, ``2015-08``, ``3``) and
``__HIVE_DEFAULT_PARTITION__`` for the null partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's, Athena's and Spark's name for "no value"
TIME_TRANSFORMS = ("year", "month", "day", "hour")
TIME_UNITS = ("auto", "epoch_seconds", "epoch_millis", "iso8601")
TIMESTAMP = pa.timestamp("us", tz="UTC")

_CALL = re.compile(r"^\s*(?P<fn>[a-z]+)\s*\((?P<args>[^()]*)\)\s*$")


class PartitionError(ValueError):
    """A partition setting that cannot work for this table or export; the message says why."""


@dataclass(frozen=True)
class PartitionBy:
    """The partitioning asked for: an attribute and a transform of it."""

    attribute: str
    transform: str = "identity"  # identity | year | month | day | hour | bucket
    buckets: int | None = None
    unit: str = "auto"  # for time transforms: auto | epoch_seconds | epoch_millis | iso8601

    @classmethod
    def parse(cls, text: str | None) -> "PartitionBy | None":
        """``year``, ``month(created_at)``, ``day(created_at, epoch_millis)``, ``bucket(16, customer_id)``;
        None or '' for an unpartitioned table. Raises PartitionError naming what is wrong."""
        if text is None or not text.strip():
            return None
        match = _CALL.match(text)
        if match is None:
            if "(" in text or ")" in text or "," in text:
                raise PartitionError(f"partition_by {text!r}: write ATTR, year|month|day|hour(ATTR[, UNIT]) "
                                     f"or bucket(N, ATTR)")
            return cls(text.strip())
        function = match.group("fn")
        args = [a.strip() for a in match.group("args").split(",")]
        if function in TIME_TRANSFORMS:
            if not 1 <= len(args) <= 2 or not args[0]:
                raise PartitionError(f"partition_by {text!r}: {function}(ATTR) or {function}(ATTR, UNIT)")
            unit = args[1] if len(args) == 2 else "auto"
            if unit not in TIME_UNITS:
                raise PartitionError(f"partition_by {text!r}: the unit must be one of {', '.join(TIME_UNITS)}")
            return cls(args[0], function, unit=unit)
        if function == "bucket":
            if len(args) != 2 or not args[0].isdigit() or not args[1]:
                raise PartitionError(f"partition_by {text!r}: bucket(N, ATTR) with N a positive integer")
            buckets = int(args[0])
            if not 1 <= buckets <= 100_000:
                raise PartitionError(f"partition_by {text!r}: N must be between 1 and 100000")
            return cls(args[1], "bucket", buckets=buckets)
        raise PartitionError(f"partition_by {text!r}: unknown transform {function!r} (year, month, day, hour, bucket)")

    @property
    def text(self) -> str:
        if self.transform == "identity":
            return self.attribute
        if self.transform == "bucket":
            return f"bucket({self.buckets}, {self.attribute})"
        return f"{self.transform}({self.attribute}" + ("" if self.unit == "auto" else f", {self.unit}") + ")"

    @property
    def derives_time(self) -> bool:
        return self.transform in TIME_TRANSFORMS


def iceberg_transform(partition: PartitionBy) -> Any:
    from pyiceberg.transforms import (BucketTransform, DayTransform, HourTransform, IdentityTransform,
                                      MonthTransform, YearTransform)

    return {"identity": IdentityTransform, "year": YearTransform, "month": MonthTransform, "day": DayTransform,
            "hour": HourTransform}[partition.transform]() if partition.transform != "bucket" \
        else BucketTransform(num_buckets=partition.buckets)


def partition_field_name(partition: PartitionBy, source_column: str) -> str:
    if partition.transform == "identity":
        return source_column
    if partition.transform == "bucket":
        return f"{source_column}_bucket"
    return f"{partition.attribute}_{partition.transform}"


# -- time values ----------------------------------------------------------------------------------


def resolve_unit(partition: PartitionBy, descriptor: str, int_digits: int | None) -> str:
    """The time unit of the attribute's values (``auto`` resolved from its type and digits)."""
    if partition.unit != "auto":
        if descriptor == "S" and partition.unit != "iso8601" or descriptor == "N" and partition.unit == "iso8601":
            raise PartitionError(f"partition_by {partition.text}: attribute {partition.attribute!r} holds "
                                 f"{descriptor} values, which cannot be {partition.unit}")
        return partition.unit
    if descriptor == "S":
        return "iso8601"
    if descriptor == "N":
        digits = int_digits or 0
        if digits <= 11:
            return "epoch_seconds"
        if digits <= 14:
            return "epoch_millis"
        raise PartitionError(f"partition_by {partition.text}: the numbers of {partition.attribute!r} have "
                             f"{digits} integer digits, neither epoch seconds nor milliseconds; give the unit, "
                             f"e.g. {partition.transform}({partition.attribute}, epoch_millis)")
    raise PartitionError(f"partition_by {partition.text}: attribute {partition.attribute!r} holds {descriptor} "
                         f"values; a time transform needs epoch numbers (N) or ISO-8601 strings (S)")


def to_timestamps(values: pa.Array, unit: str) -> pa.Array:
    """Epoch numbers (int64/decimal/text) or ISO-8601 text -> timestamp[us, UTC]; what is not a time
    of that unit becomes null (the attribute's own column keeps the value)."""
    if pa.types.is_null(values.type) or len(values) == 0:
        return pa.nulls(len(values), TIMESTAMP)
    if unit == "iso8601":
        return _iso_timestamps(values.cast(pa.string()))
    scale = 1_000_000 if unit == "epoch_seconds" else 1_000
    if pa.types.is_integer(values.type):
        micros = pc.multiply_checked(values.cast(pa.int64()), scale) if len(values) else values
        return micros.cast(pa.int64()).cast(TIMESTAMP)
    out = []
    for value in values.to_pylist():  # decimals and exact text: rare, exact through Decimal
        out.append(_micros(value, scale))
    return pa.array(out, pa.int64()).cast(TIMESTAMP)


def _micros(value: Any, scale: int) -> int | None:
    from decimal import Decimal, InvalidOperation

    if value is None:
        return None
    try:
        micros = int(Decimal(str(value)) * scale)
    except (InvalidOperation, ValueError):
        return None
    return micros if -62135596800_000_000 <= micros <= 253402300799_999_999 else None


def _iso_timestamps(text: pa.Array) -> pa.Array:
    try:
        return pc.cast(text, TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = []
    for value in text.to_pylist():
        if value is None:
            out.append(None)
            continue
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            out.append(None)
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        out.append(parsed)
    return pa.array(out, TIMESTAMP)


# -- partition keys per row --------------------------------------------------------------------------


def transform_values(partition: PartitionBy, source: pa.Array, source_type: Any = None) -> pa.Array:
    """The partition key (Iceberg's internal value: an int for time and bucket transforms, the
    value itself for identity) of each row, from the partition source column. ``source_type``
    (the column's Iceberg type) is only needed by ``bucket``, whose hash depends on it."""
    if partition.transform == "identity":
        return source
    if partition.derives_time:
        micros = source.cast(pa.int64())
        if partition.transform == "hour":
            return pc.floor(pc.divide(micros.cast(pa.float64()), 3_600_000_000.0)).cast(pa.int32())
        if partition.transform == "day":
            return source.cast(pa.date32()).cast(pa.int32())
        years = pc.subtract(pc.year(source), 1970)
        if partition.transform == "year":
            return years.cast(pa.int32())
        return pc.add(pc.multiply(years, 12), pc.subtract(pc.month(source), 1)).cast(pa.int32())
    # bucket: Iceberg's murmur3 hash, in Python once per distinct value (pyiceberg's own transform)
    if source_type is None:
        source_type = _iceberg_type_of(source.type)
    function = iceberg_transform(partition).transform(source_type)
    encoded = pc.dictionary_encode(source)
    buckets = pa.array([None if v is None else function(v) for v in encoded.dictionary.to_pylist()], pa.int32())
    return buckets.take(encoded.indices)


def _iceberg_type_of(kind: pa.DataType) -> Any:
    from pyiceberg.types import BinaryType, DecimalType, LongType, StringType

    if pa.types.is_integer(kind):
        return LongType()
    if pa.types.is_decimal(kind):
        return DecimalType(kind.precision, kind.scale)
    if pa.types.is_binary(kind):
        return BinaryType()
    return StringType()


def human_string(partition: PartitionBy, key: Any) -> str:
    """Iceberg's human string of a partition value (what pyiceberg's ``to_human_string`` gives,
    without importing pyiceberg: workers name their files with it): ``2015``, ``2015-08``,
    ``2015-08-31``, ``2015-08-31-16``, ``true``, ``null``."""
    if key is None:
        return "null"
    transform = partition.transform
    if transform == "year":
        return f"{1970 + key:04d}"
    if transform == "month":
        return f"{1970 + key // 12:04d}-{key % 12 + 1:02d}"
    if transform == "day":
        return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=key)).strftime("%Y-%m-%d")
    if transform == "hour":
        return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(hours=key)).strftime("%Y-%m-%d-%H")
    if isinstance(key, bool):
        return str(key).lower()
    return str(key)


def partition_name(partition: PartitionBy | None, key: Any) -> str:
    """A partition key as the name users see (Dagster partition keys, ``--partitions``): the
    human string, and ``__HIVE_DEFAULT_PARTITION__`` for the null partition."""
    if partition is None:
        return ""
    if key is None:
        return NULL_PARTITION
    return human_string(partition, key)


__all__ = ["NULL_PARTITION", "PartitionBy", "PartitionError", "TIMESTAMP", "human_string", "iceberg_transform",
           "partition_field_name", "partition_name", "resolve_unit", "to_timestamps", "transform_values"]
