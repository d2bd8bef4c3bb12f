"""Which rows of a data file hold a key an incremental export touched (lake/merge.py: KeyMatcher):
the first key column narrows the rows, every key column decides."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ddb_assets.lake.merge import KeyMatcher

pytestmark = pytest.mark.fast


def test_both_key_columns_must_match_not_the_first_alone() -> None:
    keys = pa.table({"pk": ["a", "a", "b", "z"], "sk": [1, 2, 9, 1]})
    rows = pa.table({"pk": ["a", "a", "a", "b", "b", "c", "z"], "sk": [1, 3, 2, 1, 9, 1, 1]})
    touched = KeyMatcher(keys, ["pk", "sk"]).touched(rows)
    assert touched.to_pylist() == [True, False, True, False, True, False, True]


def test_keys_given_twice_and_rows_in_several_chunks() -> None:
    keys = pa.table({"pk": ["a", "a", "b"], "sk": [1, 1, 2]})
    rows = pa.Table.from_batches([pa.record_batch({"pk": ["b", "a"], "sk": [2, 2]}),
                                  pa.record_batch({"pk": ["a", "x"], "sk": [1, 1]})])
    matcher = KeyMatcher(keys, ["pk", "sk"])
    assert matcher.touched(rows).to_pylist() == [True, False, True, False]
    # The same matcher serves every file of a merge; a file with no candidate row is all False.
    assert matcher.touched(pa.table({"pk": ["q"], "sk": [1]})).to_pylist() == [False]


def test_one_key_column_and_keys_typed_unlike_the_file() -> None:
    keys = pa.table({"pk": pa.array(["a", "c"], pa.large_string())})
    rows = pa.table({"pk": pa.array(["a", "b", "c"], pa.string())})
    assert KeyMatcher(keys, ["pk"]).touched(rows).to_pylist() == [True, False, True]
    keys = pa.table({"pk": ["a"], "sk": pa.array([1], pa.int32())})
    rows = pa.table({"pk": ["a", "a"], "sk": pa.array([1, 2], pa.int64())})
    assert KeyMatcher(keys, ["pk", "sk"]).touched(rows).to_pylist() == [True, False]
