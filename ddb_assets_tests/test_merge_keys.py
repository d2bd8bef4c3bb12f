"""Which rows of a data file hold a key an incremental export touched (lake/merge.py: KeyMatcher):
each key column narrows the rows, the whole key decides."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ddb_assets.lake.merge import KeyMatcher

pytestmark = pytest.mark.fast


@pytest.fixture(params=["a set of key tuples", "a hash join"])
def matcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[KeyMatcher]:
    """Both ways of matching the candidate rows on every key column give the same answer."""
    if request.param == "a hash join":
        monkeypatch.setattr(KeyMatcher, "SET_ROWS", 0)
    return KeyMatcher


def test_both_key_columns_must_match_not_the_first_alone(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "a", "b", "z"], "sk": [1, 2, 9, 1]})
    rows = pa.table({"pk": ["a", "a", "a", "b", "b", "c", "z"], "sk": [1, 3, 2, 1, 9, 1, 1]})
    touched = matcher(keys, ["pk", "sk"]).touched(rows)
    assert touched.to_pylist() == [True, False, True, False, True, False, True]
    # Each value is one the keys hold, no pair is: nothing is touched.
    crossed = pa.table({"pk": ["a", "b"], "sk": [9, 2]})
    assert matcher(keys, ["pk", "sk"]).touched(crossed).to_pylist() == [False, False]


def test_a_null_key_matches_nothing(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "b"], "sk": [None, 1]})
    rows = pa.table({"pk": ["a", "b"], "sk": pa.array([None, 1], pa.int64())})
    assert matcher(keys, ["pk", "sk"]).touched(rows).to_pylist() == [False, True]


def test_keys_given_twice_and_rows_in_several_chunks(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": ["a", "a", "b"], "sk": [1, 1, 2]})
    rows = pa.Table.from_batches([pa.record_batch({"pk": ["b", "a"], "sk": [2, 2]}),
                                  pa.record_batch({"pk": ["a", "x"], "sk": [1, 1]})])
    found = matcher(keys, ["pk", "sk"])
    assert found.touched(rows).to_pylist() == [True, False, True, False]
    # The same matcher serves every file of a merge; a file with no candidate row is all False.
    assert found.touched(pa.table({"pk": ["q"], "sk": [1]})).to_pylist() == [False]


def test_one_key_column_and_keys_typed_unlike_the_file(matcher: type[KeyMatcher]) -> None:
    keys = pa.table({"pk": pa.array(["a", "c"], pa.large_string())})
    rows = pa.table({"pk": pa.array(["a", "b", "c"], pa.string())})
    assert matcher(keys, ["pk"]).touched(rows).to_pylist() == [True, False, True]
    keys = pa.table({"pk": ["a"], "sk": pa.array([1], pa.int32())})
    rows = pa.table({"pk": ["a", "a"], "sk": pa.array([1, 2], pa.int64())})
    assert matcher(keys, ["pk", "sk"]).touched(rows).to_pylist() == [True, False]
