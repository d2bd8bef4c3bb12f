"""Hypothesis strategies for DynamoDB items in the export's JSON form, covering every type."""

from __future__ import annotations

import base64
from decimal import Decimal

from hypothesis import strategies as st

# A small pool, so the same name meets different types across items (variant columns) and
# snake-case collisions ("A b" vs "a_b"), plus names that are tricky elsewhere.
NAMES = ["a", "A b", "a_b", "price", "Item", "x.y", "é✓", "9lives", "year", "m"]

_digits = st.text(alphabet="0123456789", min_size=1, max_size=38).map(lambda s: s.lstrip("0") or "0")


@st.composite
def numbers(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["small", "int38", "decimal", "exponent"]))
    sign = draw(st.sampled_from(["", "-"]))
    if kind == "small":
        return str(draw(st.integers(-1000, 1000)))
    if kind == "int38":
        return sign + draw(_digits) if draw(_digits) != "0" else "0"
    if kind == "decimal":
        digits = draw(st.text(alphabet="0123456789", min_size=2, max_size=38))
        point = draw(st.integers(1, len(digits) - 1))
        text = digits[:point].lstrip("0") or "0"
        frac = digits[point:].rstrip("0")
        return sign + text + ("." + frac if frac else "")
    mantissa = draw(st.integers(1, 9))
    exponent = draw(st.sampled_from([-130, -129, -40, 40, 100, 125]))
    return f"{sign}{mantissa}E{exponent:+d}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=12)),
    st.builds(lambda n: {"N": n}, numbers()),
    st.builds(lambda b: {"B": _b64(b)}, st.binary(max_size=8)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=6), min_size=1, max_size=4)),
    st.builds(lambda s: {"NS": [str(v) for v in s]},
              st.lists(numbers(), min_size=1, max_size=4, unique_by=lambda n: Decimal(n))),
    st.builds(lambda s: {"BS": sorted(_b64(b) for b in s)}, st.sets(st.binary(max_size=5), min_size=1, max_size=3)),
)

attribute_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.builds(lambda items: {"L": items}, st.lists(children, max_size=3)),
        st.builds(lambda fields: {"M": fields}, st.dictionaries(st.sampled_from(NAMES), children, max_size=3)),
    ),
    max_leaves=8,
)


@st.composite
def items(draw: st.DrawFn, index: int = 0) -> dict:
    attributes = draw(st.dictionaries(st.sampled_from(NAMES), attribute_values, max_size=5))
    return {"pk": {"S": f"item-{index}"}, "sk": {"N": "1"}, **attributes}


@st.composite
def item_batches(draw: st.DrawFn) -> list[dict]:
    count = draw(st.integers(1, 8))
    return [draw(items(index)) for index in range(count)]
