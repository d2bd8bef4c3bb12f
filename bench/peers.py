"""The peers the benchmark measures our converter against. Each runs as its own process:

    python bench/peers.py duckdb EXPORT_FOLDER OUT
    python bench/peers.py naive  EXPORT_FOLDER OUT
    python bench/peers.py floor  EXPORT_FOLDER
    python bench/peers.py floor-explicit EXPORT_FOLDER
    python bench/peers.py floor-write EXPORT_FOLDER OUT [CODEC]

Kept deliberately free of ddb_assets imports: they are what a team would write without it.
"""

from __future__ import annotations

import base64
import glob
import gzip
import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor


def data_files(export: str) -> list[str]:
    return sorted(glob.glob(os.path.join(export, "data", "*.json.gz")))


# The reviews table's attributes, unwrapped by hand the way a DuckDB user would write it.
DUCKDB_COLUMNS = """
    Item.product_id.S AS product_id, Item.review_id.S AS review_id, Item.customer_id.S AS customer_id,
    Item.product_title.S AS product_title, Item.product_category.S AS product_category,
    CAST(Item.star_rating.N AS BIGINT) AS star_rating, CAST(Item.helpful_votes.N AS BIGINT) AS helpful_votes,
    CAST(Item.total_votes.N AS BIGINT) AS total_votes, Item.vine.S AS vine,
    Item.verified_purchase.S AS verified_purchase, Item.review_headline.S AS review_headline,
    Item.review_body.S AS review_body, Item.review_date.S AS review_date,
    CAST(Item.price.N AS DECIMAL(38, 18)) AS price, Item.price.S AS price__s,
    CAST(Item.year.N AS BIGINT) AS year
"""


def run_duckdb(export: str, out: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    files = data_files(export)
    con.execute(f"""
        COPY (SELECT {DUCKDB_COLUMNS} FROM read_json({files!r}, format = 'newline_delimited'))
        TO '{out}' (FORMAT parquet, PARTITION_BY (year), OVERWRITE_OR_IGNORE true)
    """)


def run_naive(export: str, out: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from boto3.dynamodb.types import TypeDeserializer

    class ExportDeserializer(TypeDeserializer):
        # TypeDeserializer expects bytes for B; exports hold base64 text (the usual one-line fix).
        def _deserialize_b(self, value):  # type: ignore[no-untyped-def]
            return base64.b64decode(value)

    deserializer = ExportDeserializer()
    rows = []
    for path in data_files(export):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)["Item"]
                row = {k: deserializer.deserialize(v) for k, v in item.items()}
                # Arrow cannot take Python sets; the usual fix is a list.
                rows.append({k: sorted(v) if isinstance(v, set) else v for k, v in row.items()})
    # The common recipe: from_pylist infers the schema from the first row, so attributes absent
    # there are dropped; nested values and Decimals are handed to Arrow as they come.
    table = pa.Table.from_pylist(rows)
    pq.write_to_dataset(table, out, partition_cols=["year"])


def _parse_one(path: str) -> int:
    import pyarrow.json as pajson
    from isal import igzip

    with open(path, "rb") as handle:
        raw = igzip.decompress(handle.read())
    table = pajson.read_json(io.BytesIO(raw), read_options=pajson.ReadOptions(use_threads=False,
                                                                              block_size=len(raw) + 1))
    return table.num_rows


def run_floor(export: str) -> None:
    """gunzip + pyarrow JSON parse, nothing else, one process per core: the floor for any converter."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rows = sum(pool.map(_parse_one, data_files(export)))
    print(json.dumps({"rows": rows}))


def _explicit_schema(export: str):  # type: ignore[no-untyped-def]
    """What a tuned pyarrow path starts from: the schema of the first megabyte, strings kept as
    strings, and maps with many keys (dictionaries, not records) left out."""
    import pyarrow as pa
    import pyarrow.json as pajson
    from isal import igzip

    with igzip.open(data_files(export)[0], "rb") as handle:
        head = handle.read(1 << 20)
    head = head[:head.rfind(b"\n") + 1]
    inferred = pajson.read_json(io.BytesIO(head)).schema

    def keep(kind):  # type: ignore[no-untyped-def]
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            return pa.string()
        if pa.types.is_struct(kind):
            if kind.num_fields > 64:
                return None
            fields = [(f.name, keep(f.type)) for f in kind]
            return pa.struct([pa.field(n, t) for n, t in fields if t is not None])
        if pa.types.is_list(kind):
            value = keep(kind.value_type)
            return pa.list_(value) if value is not None else None
        return kind

    return pa.schema([pa.field(f.name, keep(f.type)) for f in inferred if keep(f.type) is not None])


def _parse_one_explicit(path: str, schema_bytes: bytes) -> int:
    import pyarrow as pa
    import pyarrow.json as pajson
    from isal import igzip

    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    with open(path, "rb") as handle:
        raw = igzip.decompress(handle.read())
    table = pajson.read_json(io.BytesIO(raw), read_options=pajson.ReadOptions(use_threads=False, block_size=len(raw) + 1),
                             parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    return table.num_rows


def run_floor_explicit(export: str) -> None:
    """gunzip + pyarrow JSON parse with an explicit schema (no inference, dictionary maps skipped),
    one process per core: the floor for a converter built on pyarrow's reader."""
    schema_bytes = _explicit_schema(export).serialize().to_pybytes()
    files = data_files(export)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rows = sum(pool.map(_parse_one_explicit, files, [schema_bytes] * len(files)))
    print(json.dumps({"rows": rows}))


def _unwrapped(item):  # type: ignore[no-untyped-def]
    """The parsed ``Item`` struct as one column per attribute and type descriptor (zero-copy child
    arrays); structs with no fields (Parquet cannot store them) left out."""
    import pyarrow as pa

    names, columns = [], []
    for index, attribute in enumerate(item.type):
        wrapper = item.field(index)
        for position, descriptor in enumerate(attribute.type):
            if pa.types.is_struct(descriptor.type) and descriptor.type.num_fields == 0:
                continue
            names.append(f"{attribute.name}.{descriptor.name}")
            columns.append(wrapper.field(position))
    return pa.table(columns, names=names)


def _parse_and_write(path: str, schema_bytes: bytes, out: str, codec: str) -> int:
    import pyarrow as pa
    import pyarrow.json as pajson
    import pyarrow.parquet as pq
    from isal import igzip

    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    with open(path, "rb") as handle:
        raw = igzip.decompress(handle.read())
    table = pajson.read_json(io.BytesIO(raw), read_options=pajson.ReadOptions(use_threads=False, block_size=len(raw) + 1),
                             parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    del raw
    flat = _unwrapped(table.column("Item").combine_chunks())
    del table
    level = 1 if codec == "zstd" else None
    pq.write_table(flat, os.path.join(out, os.path.basename(path).split(".")[0] + ".parquet"),
                   compression=codec, compression_level=level, row_group_size=128 * 1024)
    return flat.num_rows


def run_floor_write(export: str, out: str, codec: str = "zstd") -> None:
    """gunzip + pyarrow JSON parse (explicit schema) + Parquet write of the unwrapped columns, one
    file per data file, one process per core: no validation, no profiling, no exact numbers, no
    partitioning. What any converter built on pyarrow's reader and writer pays at the least."""
    schema_bytes = _explicit_schema(export).serialize().to_pybytes()
    files = data_files(export)
    os.makedirs(out, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rows = sum(pool.map(_parse_and_write, files, [schema_bytes] * len(files), [out] * len(files),
                            [codec] * len(files)))
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    kind, export = sys.argv[1], sys.argv[2]
    if kind == "duckdb":
        run_duckdb(export, sys.argv[3])
    elif kind == "naive":
        run_naive(export, sys.argv[3])
    elif kind == "floor":
        run_floor(export)
    elif kind == "floor-explicit":
        run_floor_explicit(export)
    elif kind == "floor-write":
        run_floor_write(export, sys.argv[3], *sys.argv[4:5])
    else:
        raise SystemExit(f"unknown peer {kind!r}")
