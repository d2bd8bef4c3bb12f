"""The export completion sensor's cursor (defs/sensors.py ``HandledExports``): small however many
exports ListExports returns, and never skipping an export that finishes late."""

from __future__ import annotations

import json

import pytest

from ddb_assets.defs.sensors import LISTING_MARGIN_MS, HandledExports

pytestmark = pytest.mark.fast

DAY_MS = 86_400_000
T0 = 1_796_000_000_000  # ms since the epoch


def export_id(started_ms: int, n: int = 0) -> str:
    return f"{started_ms:014d}-{n:08x}"


def tick(handled: HandledExports, listing: dict[str, str]) -> tuple[HandledExports, list[str]]:
    """One sensor tick over ``listing`` (export id -> status), as the sensor runs it: the finished
    exports not handled yet are handled; the cursor goes through its JSON text."""
    finished = sorted(i for i, status in listing.items() if status != "IN_PROGRESS" and i not in handled)
    in_flight = [i for i, status in listing.items() if status == "IN_PROGRESS"]
    after = handled.after_tick(set(listing), set(finished), in_flight)
    return HandledExports.from_cursor(after.to_cursor()), finished


def test_ninety_days_of_exports_keep_the_cursor_small_and_are_handled_once() -> None:
    listing = {export_id(T0 + k * 15 * 60_000, k): "COMPLETED" for k in range(90 * 96)}  # every 15 minutes

    handled, first = tick(HandledExports(set()), listing)
    assert first == sorted(listing)
    assert len(handled.to_cursor()) < 2_000  # the ids of the last hour, not 8,640 of them

    handled, again = tick(handled, listing)
    assert again == []
    newer = export_id(T0 + 90 * DAY_MS, 1)
    handled, third = tick(handled, {**listing, newer: "COMPLETED"})
    assert third == [newer]


def test_a_long_export_in_flight_is_handled_when_it_completes() -> None:
    long_one = export_id(T0, 7)  # a full export of a big table: hours in flight
    listing = {long_one: "IN_PROGRESS"}
    handled = HandledExports(set())
    for hour in range(1, 6):  # windows exported and completed meanwhile
        listing[export_id(T0 + hour * 3_600_000, hour)] = "COMPLETED"
        handled, done = tick(handled, listing)
        assert long_one not in done and long_one not in handled
    assert handled.before <= T0

    listing[long_one] = "COMPLETED"
    handled, done = tick(handled, listing)
    assert done == [long_one]
    handled, done = tick(handled, listing)
    assert done == []


def test_an_export_listed_late_below_the_mark_waits_for_its_completion() -> None:
    listing = {export_id(T0 + k * 3_600_000, k): "COMPLETED" for k in range(10)}
    handled, _ = tick(HandledExports(set()), listing)
    late = export_id(T0 + 3_600_000 // 2, 99)  # started long ago, first listed now
    assert handled.before > T0 + 3_600_000 // 2

    listing[late] = "IN_PROGRESS"
    handled, done = tick(handled, listing)
    assert done == [] and late not in handled
    listing[late] = "COMPLETED"
    handled, done = tick(handled, listing)
    assert done == [late]
    handled, done = tick(handled, listing)
    assert done == []


def test_a_cursor_of_the_older_shape_is_read_as_ids() -> None:
    ids = [export_id(T0 + k * LISTING_MARGIN_MS, k) for k in range(3)]
    handled = HandledExports.from_cursor(json.dumps({"handled": ids[:2]}))
    assert ids[0] in handled and ids[1] in handled and ids[2] not in handled
    _, done = tick(handled, {i: "COMPLETED" for i in ids})
    assert done == [ids[2]]


def test_an_id_of_another_shape_is_kept_by_its_id() -> None:
    odd = "not-a-time-prefix"
    listing = {odd: "FAILED", **{export_id(T0 + k * 3_600_000, k): "COMPLETED" for k in range(5)}}
    handled, done = tick(HandledExports(set()), listing)
    assert odd in done
    handled, done = tick(handled, listing)
    assert done == [] and odd in handled.ids
