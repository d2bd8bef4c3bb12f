"""Sample data shaped like the Amazon Customer Reviews dataset used by the AWS walkthrough.

Table ``reviews``: partition key ``product_id``, sort key ``review_id``. Customers and products are
Zipf-skewed so "who wrote the most reviews" has a clear answer; years run 1995-2015 skewed to
recent ones. A fraction of items carries the hard cases (sparse, nested maps/lists/sets, binary,
38-digit decimals, mixed types, a map used as a dictionary, empty lists/maps, odd names) so every
run exercises them. Deterministic for a given seed.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import random
import string
from typing import Any, Iterator

TABLE_NAME = "reviews"
PARTITION_KEY = "product_id"
SORT_KEY = "review_id"
FIRST_YEAR, LAST_YEAR = 1995, 2015
# Bumped whenever the generated items change, so cached exports (bench/data/) are regenerated.
SHAPE_VERSION = 2

CATEGORIES = ["Books", "Electronics", "Kitchen", "Toys", "Music", "Video DVD", "Sports", "Apparel",
              "Home", "Beauty", "Wireless", "Digital_Ebook_Purchase"]
TITLE_WORDS = ["Quiet", "Sturdy", "Classic", "Deluxe", "Portable", "Smart", "Vintage", "Ultra", "Compact",
               "Wireless", "Kettle", "Lamp", "Novel", "Guide", "Speaker", "Blender", "Puzzle", "Jacket"]
HEADLINES = ["Five Stars", "Great value", "Not what I expected", "Works as described", "Love it",
             "Broke after a week", "Would buy again", "Meh", "Exactly as pictured", "Disappointed"]
BODY_WORDS = ["great", "product", "quality", "price", "shipping", "works", "recommend", "easy", "would",
              "again", "bought", "gift", "love", "broke", "small", "perfect", "cheap", "sturdy", "use"]
# Review text: the words above most often, then a long Zipf tail of made-up words, so bodies
# compress like text rather than like a 19-word loop.
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fe", "gu", "ho", "ji", "pe", "zu"]
_TAIL_WORDS = sorted({"".join(random.Random(n).choices(_SYLLABLES, k=2 + n % 3)) for n in range(600)})
VOCABULARY = BODY_WORDS + [w for w in _TAIL_WORDS if w not in BODY_WORDS]
_VOCABULARY_WEIGHTS = list(itertools.accumulate(1.0 / rank for rank in range(1, len(VOCABULARY) + 1)))
COUNTRIES = ["US", "DE", "FR", "JP", "UK", "BR", "IN", "España", "Österreich"]


def _zipf_cumulative(size: int, exponent: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank ** exponent) for rank in range(1, size + 1)))


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return bisect.bisect_left(cumulative, rng.random() * cumulative[-1])


def _ident(rng: random.Random, prefix: str, length: int) -> str:
    return prefix + "".join(rng.choices(string.ascii_uppercase + string.digits, k=length))


class ReviewGenerator:
    """Yields review items in DynamoDB JSON (AttributeValue) form: ``{"star_rating": {"N": "5"}, ...}``."""

    def __init__(self, items: int, seed: int = 7):
        self.items = items
        self.seed = seed
        rng = random.Random(seed)
        self.products = [(_ident(rng, "B00", 7), self._title(rng, i), rng.choice(CATEGORIES))
                         for i in range(max(20, items // 15))]
        self.customers = [str(10_000_000 + rng.randrange(90_000_000)) for _ in range(max(50, items // 6))]
        self._product_weights = _zipf_cumulative(len(self.products), 1.05)
        self._customer_weights = _zipf_cumulative(len(self.customers), 1.1)
        years = range(FIRST_YEAR, LAST_YEAR + 1)
        self._years = list(years)
        self._year_weights = list(itertools.accumulate(1.3 ** (y - FIRST_YEAR) for y in years))

    @staticmethod
    def _title(rng: random.Random, index: int) -> str:
        if index == 3:
            return "Dune"  # the AWS walkthrough looks this title up
        return " ".join(rng.sample(TITLE_WORDS, 2)) + f" {index}"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(self.seed * 1_000_003 + 1)
        for number in range(self.items):
            yield self.item(rng, number)

    def item(self, rng: random.Random, number: int) -> dict[str, Any]:
        product_id, title, category = self.products[_pick(rng, self._product_weights)]
        year = self._years[_pick(rng, self._year_weights)]
        total_votes = rng.choice([0, 0, 0, 1, 2, 3, 5, 8, 13, 40])
        item: dict[str, Any] = {
            PARTITION_KEY: {"S": product_id},
            SORT_KEY: {"S": f"R{number:08d}{_ident(rng, '', 5)}"},
            "customer_id": {"S": self.customers[_pick(rng, self._customer_weights)]},
            "product_title": {"S": title},
            "product_category": {"S": category},
            "star_rating": {"N": str(rng.choices([1, 2, 3, 4, 5], weights=[8, 5, 9, 20, 58])[0])},
            "helpful_votes": {"N": str(rng.randint(0, total_votes))},
            "total_votes": {"N": str(total_votes)},
            "vine": {"S": "Y" if rng.random() < 0.02 else "N"},
            "verified_purchase": {"S": "Y" if rng.random() < 0.8 else "N"},
            "review_headline": {"S": rng.choice(HEADLINES)},
            "review_body": {"S": self._body(rng)},
            "review_date": {"S": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"},
            "year": {"N": str(year)},
        }
        self._hard_cases(rng, item)
        return item

    @staticmethod
    def _body(rng: random.Random) -> str:
        # Long-tailed like real reviews: median about 65 words, a few of several hundred.
        words = min(600, max(3, int(rng.lognormvariate(4.2, 0.7))))
        return " ".join(rng.choices(VOCABULARY, cum_weights=_VOCABULARY_WEIGHTS, k=words))

    @staticmethod
    def _hard_cases(rng: random.Random, item: dict[str, Any]) -> None:
        roll = rng.random
        if roll() < 0.06:
            item["tags"] = {"SS": sorted(set(rng.sample(["gift", "sale", "bulk", "new", "refurbished", "eco"], 2)))}
        if roll() < 0.05:
            item["photo_sizes"] = {"NS": [str(v) for v in sorted(set(rng.sample(range(100, 4000), 3)))]}
        if roll() < 0.10:
            reviewer: dict[str, Any] = {"name": {"S": rng.choice(["Ana", "Bo", "Chen", "Dee", "Émile"])},
                                        "location": {"M": {"country": {"S": rng.choice(COUNTRIES)}}}}
            if roll() < 0.5:
                reviewer["badges"] = {"L": [{"S": b} for b in rng.sample(["top-1000", "vine-voice", "early"], 2)]}
            if roll() < 0.3:
                reviewer["location"]["M"]["zip"] = {"S": f"{rng.randint(1000, 99999):05d}"}
            item["reviewer"] = {"M": reviewer}
        price_roll = roll()
        if price_roll < 0.03:
            # 38 significant digits: only decimal128(38, s) holds this exactly.
            item["price"] = {"N": f"{rng.randint(10**19, 10**20 - 1)}.{rng.randint(10**17, 10**18 - 1)}"}
        elif price_roll < 0.30:
            item["price"] = {"N": f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"}
        elif price_roll < 0.31:
            item["price"] = {"S": "N/A"}  # the same attribute with another type: variant columns
        if roll() < 0.02:
            item["attachment"] = {"B": base64.b64encode(rng.randbytes(rng.randint(0, 24))).decode("ascii")}
        if roll() < 0.01:
            item["thumbnails"] = {"BS": [base64.b64encode(rng.randbytes(4) + bytes([i])).decode("ascii")
                                         for i in range(2)]}
        if roll() < 0.04:
            item["edit_history"] = {"L": [{"N": str(rng.randint(1, 9))}, {"S": "typo fixed"}]}  # mixed list
        if roll() < 0.03:
            # A map used as a dictionary: its keys are data (many distinct), not a schema.
            item["votes_by_day"] = {"M": {f"d{rng.randint(1, 4000)}": {"N": str(rng.randint(1, 9))}
                                          for _ in range(rng.randint(1, 4))}}
        if roll() < 0.03:
            item["comment"] = {"NULL": True}
        if roll() < 0.03:
            item["extras"] = rng.choice([{"L": []}, {"M": {}}])
        if roll() < 0.05:
            item["helpful-ratio"] = {"N": f"0.{rng.randint(0, 999):03d}"}
        if roll() < 0.02:
            item["Review Text"] = {"S": "Très bien — 很好 ✓"}
        if roll() < 0.02:
            item["is_gift"] = {"BOOL": roll() < 0.5}
