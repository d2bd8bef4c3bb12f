"""Load items into a DynamoDB table with BatchWriteItem, retrying unprocessed items."""

from __future__ import annotations

import base64
import time
from typing import Any, Callable, Iterable

_BATCH = 25  # BatchWriteItem's limit


def batch_write(client: Any, table: str, items: Iterable[dict[str, Any]],
                on_progress: Callable[[int], None] = lambda n: None, max_attempts: int = 8) -> int:
    """Write every item; returns how many. Unprocessed items are retried with exponential backoff."""
    written = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal written, batch
        requests = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        for attempt in range(max_attempts):
            unprocessed = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
            done = len(requests[table]) - len(unprocessed.get(table, []))
            written += done
            on_progress(done)
            if not unprocessed:
                break
            requests = unprocessed
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
        else:
            raise RuntimeError(f"{len(requests[table])} items of table {table!r} were still unprocessed "
                               f"after {max_attempts} attempts")
        batch = []

    for item in items:
        batch.append(to_client_form(item))
        if len(batch) == _BATCH:
            flush()
    if batch:
        flush()
    return written


def to_client_form(item: dict[str, Any]) -> dict[str, Any]:
    """Export JSON form -> boto3's low-level form: binary values as raw bytes, not base64 text.

    (boto3 base64-encodes whatever it is given for ``B``; passing the export's text would store
    the text itself.)
    """
    return {name: _attribute(value) for name, value in item.items()}


def _attribute(attr: dict[str, Any]) -> dict[str, Any]:
    [(kind, raw)] = attr.items()
    if kind == "B":
        return {"B": base64.b64decode(raw)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in raw]}
    if kind == "M":
        return {"M": {k: _attribute(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_attribute(v) for v in raw]}
    return attr
