"""Number text is never rounded, whatever Decimal's default context says."""

from __future__ import annotations

import pytest

from ddb_assets.exports.numbers import canonical_number


@pytest.mark.parametrize("text,expected", [
    ("1.0000000000000000000000000001", "1.0000000000000000000000000001"),  # 29 digits: > default precision
    ("-12345678901234567890123456789012345678", "-12345678901234567890123456789012345678"),
    ("1200", "1200"), ("17.250", "17.25"), ("0", "0"), ("-0.0", "0"),
    ("1E+125", "1E+125"), ("1E-130", "1E-130"), ("12E2", "1200"),
])
def test_canonical_number_is_exact(text: str, expected: str) -> None:
    assert canonical_number(text) == expected
