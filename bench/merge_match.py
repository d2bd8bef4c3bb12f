"""How the merge's key matching scales with the changed keys (bench/README.md, "Matching many files at once").

A table of FILES data files of ROWS keys each, and 200,000 changed keys spread over them, so every file
is a candidate: ``affected_files`` with files matched one at a time (MATCH_ROWS=0) and in batches (the
default), alternately, printing CPU and wall seconds. Writes a throwaway table under /tmp.

    .venv/bin/python bench/merge_match.py
"""

import time, shutil, pyarrow as pa
from ddb_assets.exports.storage import resolve
from ddb_assets.lake import merge
from ddb_assets.lake.catalog import CatalogConfig, open_catalog
root = "/tmp/ddb-assets-merge-match"; shutil.rmtree(root, ignore_errors=True)
catalog = open_catalog(CatalogConfig(), resolve(root)); catalog.create_namespace("default")
schema = pa.schema([pa.field("pk", pa.string(), nullable=False)])
table = catalog.create_table(("default", "t"), schema=schema, location=root + "/t")
FILES, ROWS = 200, 5000
with table.transaction() as tx:
    for f in range(FILES):
        tx.append(pa.table({"pk": [f"k{(i * FILES + f):09d}" for i in range(ROWS)]}, schema=schema))
table = catalog.load_table(("default", "t"))
print("files", len(list(table.scan().plan_files())))
keys = pa.table({"pk": [f"k{i:09d}" for i in range(0, FILES * ROWS, 5)]})  # 200k changed keys, in every file
for match_rows in (0, merge.MATCH_ROWS, 0, merge.MATCH_ROWS):
    merge.MATCH_ROWS = match_rows
    t = time.process_time(); w = time.monotonic()
    found = merge.affected_files(table, keys, ["pk"], None)
    print(f"MATCH_ROWS={match_rows:>9}: {len(found)} files, {sum(len(a.touched_positions) for a in found)} rows, cpu {time.process_time()-t:.2f} s wall {time.monotonic()-w:.2f} s", flush=True)
