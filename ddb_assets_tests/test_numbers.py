"""Number text is never rounded, whatever Decimal's default context says."""

from __future__ import annotations

import pytest

from ddb_assets.exports.numbers import canonical_number, range_problem

# Pure: in-memory Arrow and local files, no local world or subprocess (make test-fast).
pytestmark = pytest.mark.fast


@pytest.mark.parametrize("text,expected", [
    ("1.0000000000000000000000000001", "1.0000000000000000000000000001"),  # 29 digits: > default precision
    ("-12345678901234567890123456789012345678", "-12345678901234567890123456789012345678"),
    ("1200", "1200"), ("17.250", "17.25"), ("0", "0"), ("-0.0", "0"),
    ("1E+125", "1E+125"), ("1E-130", "1E-130"), ("12E2", "1200"),
])
def test_canonical_number_is_exact(text: str, expected: str) -> None:
    assert canonical_number(text) == expected


def test_numbers_in_json_text_stay_exact_and_are_valid_json() -> None:
    """Dictionary maps and mixed lists are written as JSON text; a number keeps its exact text
    unless JSON does not allow that form, which is then written canonically (same value)."""
    import json
    from decimal import Decimal

    from ddb_assets.exports.plain_json import plain_json_text, plain_map

    numbers = ["1.50", "-0", "1E+125", "-1E-130", "12345678901234567890123456789012345678", "+5", ".5", "05", "5."]
    text = plain_json_text(plain_map({f"k{i}": {"N": n} for i, n in enumerate(numbers)}))
    assert text.startswith('{"k0":1.50,"k1":-0,"k2":1E+125,"k3":-1E-130,"k4":12345678901234567890123456789012345678,')
    parsed = json.loads(text, parse_float=Decimal, parse_int=Decimal)  # valid JSON, every value exact
    assert [parsed[f"k{i}"] for i in range(len(numbers))] == [Decimal(n) for n in numbers]


@pytest.mark.parametrize("text", [
    "1" * 38, "-" + "9" * 38, "9.9999999999999999999999999999999999999E+125", "1E-130", "-1E-130", "0.0E-999",
    "1" + "0" * 90,  # trailing zeros are not significant: 1E+90
    "0." + "0" * 60 + "1", "12345678901234567890123456789012345678.000", "1e125",
])
def test_numbers_dynamodb_holds_are_in_range(text: str) -> None:
    assert range_problem(text) is None


@pytest.mark.parametrize("text, problem", [
    ("1" * 39, "has 39 significant digits"), ("1.00000000000000000000000000000000000001", "has 39 significant digits"),
    ("1E+126", "outside DynamoDB's range"), ("10E125", "outside DynamoDB's range"),
    ("1E-131", "outside DynamoDB's range"), ("-0.1E-130", "outside DynamoDB's range"),
])
def test_numbers_beyond_dynamodbs_range_are_named(text: str, problem: str) -> None:
    assert problem in (range_problem(text) or "")
