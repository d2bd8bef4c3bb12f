"""DynamoDB numbers: exact decimal strings, never floats (EXPORT_FORMAT.md §6.6)."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

# DynamoDB numbers carry up to 38 significant digits, magnitude 1E-130 to 9.99...E+125.
MAX_DIGITS = 38
# What an N may hold: a decimal literal, optionally with an exponent. Checked explicitly, as a
# regex (Arrow's and RE2's syntax alike): Arrow's integer cast reads "0x10" as 16, Python's Decimal
# "1_000" as 1000 and " 5" as 5, and "NaN" is no DynamoDB number.
NUMBER_TEXT = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
# The subset JSON allows as a number, which a JSON text can carry as it is.
JSON_NUMBER_TEXT = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
# Decimal arithmetic (normalize() included) rounds to the context's precision, 28 digits by
# default: every operation on DynamoDB numbers goes through this context, which never rounds them.
EXACT = Context(prec=100, Emin=-999, Emax=999)


def parse_number(text: str) -> Decimal:
    """Parse a DynamoDB number string exactly; raises ValueError on anything else."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError):
        raise ValueError(f"not a DynamoDB number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a DynamoDB number: {text!r}")
    return value


def canonical_number(value: Decimal | str) -> str:
    """One text form per value, whichever encoding (JSON string, Ion decimal) it came from.

    Plain notation without trailing zeros while it stays short (what DynamoDB itself returns for
    everyday numbers: ``"1200"``, ``"17.25"``), scientific notation beyond 38 digits either side
    of the point (``"1E+125"``, ``"1E-130"``).
    """
    number = parse_number(value) if isinstance(value, str) else value
    if number.is_zero():
        return "0"
    normalized = number.normalize(EXACT)
    _, digits, exponent = normalized.as_tuple()
    assert isinstance(exponent, int)
    if -MAX_DIGITS <= exponent and len(digits) + exponent <= MAX_DIGITS:
        return format(normalized, "f")
    return str(normalized).replace("e", "E")
