"""Write a large sample export straight to a folder, skipping the table (benchmarks, big tests)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from ddb_assets.local.export_writer import ExportRequest, FolderSink, write_export
from ddb_assets.local.sample_data import PARTITION_KEY, SORT_KEY, TABLE_NAME, ReviewGenerator
from ddb_assets.local.world import ACCOUNT_ID, DEFAULT_REGION


def generate_folder_export(dest: Path, *, items: int, files: int, seed: int = 7, export_format: str = "DYNAMODB_JSON",
                           prefix: str | None = "bench", bucket: str = "local-bucket",
                           console: Console | None = None) -> Path:
    """Returns the path of the export's ``manifest-summary.json``."""
    now = datetime.now(timezone.utc)
    table_arn = f"arn:aws:dynamodb:{DEFAULT_REGION}:{ACCOUNT_ID}:table/{TABLE_NAME}"
    export_id = f"{int(now.timestamp() * 1000):014d}-{secrets.token_hex(4)}"
    request = ExportRequest(
        export_arn=f"{table_arn}/export/{export_id}", table_arn=table_arn, table_id="00000000-0000-0000-0000-000000000000",
        bucket=bucket, prefix=prefix, output_format=export_format, start_time=now, export_time=now,
        key_attributes=(PARTITION_KEY, SORT_KEY), data_files=files,
    )
    generator = ReviewGenerator(items, seed=seed)
    if console is not None:
        from rich.progress import track

        stream = track(generator, total=items, description="generating", console=console)
    else:
        stream = iter(generator)
    write_export(request, stream, FolderSink(dest))
    return Path(dest) / request.summary_key
