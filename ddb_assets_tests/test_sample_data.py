"""The sample reviews: deterministic, skewed like the real dataset, and full of hard cases."""

from __future__ import annotations

import base64
import collections
from typing import Any

import pytest

from ddb_assets.local.loader import batch_write
from ddb_assets.local.sample_data import ReviewGenerator
from ddb_assets.local.tables import create_reviews_table
from ddb_assets_tests.conftest import unique


@pytest.mark.fast
def test_same_seed_same_items_other_seed_other_items() -> None:
    assert list(ReviewGenerator(300, seed=1)) == list(ReviewGenerator(300, seed=1))
    assert list(ReviewGenerator(300, seed=1)) != list(ReviewGenerator(300, seed=2))


@pytest.mark.fast
def test_reviews_are_shaped_like_the_walkthrough_dataset() -> None:
    items = list(ReviewGenerator(5000, seed=7))
    required = {"product_id", "review_id", "customer_id", "product_title", "product_category", "star_rating",
                "helpful_votes", "total_votes", "vine", "verified_purchase", "review_headline", "review_body",
                "review_date", "year"}
    assert all(required <= set(item) for item in items)
    assert len({(i["product_id"]["S"], i["review_id"]["S"]) for i in items}) == len(items)  # unique keys
    years = collections.Counter(int(i["year"]["N"]) for i in items)
    assert min(years) >= 1995 and max(years) <= 2015
    assert years[2015] > years[2005] > years[1996]  # skewed to recent years
    customers = collections.Counter(i["customer_id"]["S"] for i in items).most_common(3)
    assert customers[0][1] > 1.5 * customers[2][1]  # a clear top reviewer
    assert any(i["product_title"]["S"] == "Dune" for i in items)


@pytest.mark.fast
def test_hard_cases_are_always_present() -> None:
    items = list(ReviewGenerator(3000, seed=7))
    kinds: dict[str, set[str]] = collections.defaultdict(set)
    for item in items:
        for name, attr in item.items():
            kinds[name] |= set(attr)
    assert {"SS", "NS", "BS", "B", "NULL", "BOOL", "L", "M"} <= set().union(*kinds.values())
    assert kinds["price"] == {"N", "S"}  # mixed types
    assert any(len(i["price"]["N"].replace(".", "")) == 38 for i in items if "N" in i.get("price", {}))
    assert {"Review Text", "helpful-ratio"} <= set(kinds)
    assert any(i.get("extras") in ({"L": []}, {"M": {}}) for i in items)
    dictionary_keys = {k for i in items for k in i.get("votes_by_day", {}).get("M", {})}
    assert len(dictionary_keys) > 40


def test_batch_write_loads_every_item(ddb: Any) -> None:
    name = unique("reviews")
    create_reviews_table(ddb, name)
    progress: list[int] = []
    items = list(ReviewGenerator(400, seed=3))
    written = batch_write(ddb, name, items, progress.append)
    assert written == sum(progress) == 400
    stored = ddb.scan(TableName=name)["Items"]
    assert len(stored) == 400
    # Binary attributes arrive as the bytes the export's base64 stands for, not as base64 text.
    by_key = {(i["product_id"]["S"], i["review_id"]["S"]): i for i in stored}
    with_binary = [i for i in items if "attachment" in i]
    assert with_binary
    for item in with_binary:
        got = by_key[(item["product_id"]["S"], item["review_id"]["S"])]["attachment"]["B"]
        assert got == base64.b64decode(item["attachment"]["B"])
