"""Arrow types as Glue/Hive type strings (the local world's Athena names CTAS columns with them)."""

from __future__ import annotations

import pyarrow as pa


def glue_type(kind: pa.DataType) -> str:
    """Arrow type -> Glue/Hive type string."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_int64(kind):
        return "bigint"
    if pa.types.is_int32(kind):
        return "int"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_floating(kind):
        return "double"
    if pa.types.is_list(kind):
        return f"array<{glue_type(kind.value_type)}>"
    if pa.types.is_struct(kind):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in kind) + ">"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_null(kind):
        return "string"
    raise ValueError(f"no Glue type for Arrow type {kind}")
