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
# A number written without an exponent in at most this many characters has at most 38 digits and
# a magnitude between 1E-37 and 1E+38: within DynamoDB's range, whatever it is (the cheap test that
# spares nearly every number the exact one, ``range_problem``).
PLAIN_IN_RANGE = MAX_DIGITS
PLAIN_NUMBER_TEXT = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
# The magnitudes DynamoDB accepts, as adjusted exponents (the exponent of the first digit).
MIN_EXPONENT, MAX_EXPONENT = -130, 125
RANGE_TEXT = "1E-130 to 9.99...E+125"
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


def range_problem(text: str) -> str | None:
    """What puts a number text (one that matches NUMBER_TEXT) outside DynamoDB's range (more than
    38 significant digits, a magnitude beyond 1E-130..9.99...E+125), or None when DynamoDB can hold
    it. Leading and trailing zeros are not significant (DynamoDB trims them): ``1000...0`` with 50
    zeros is ``1E+50``, in range. Cheap for the short plain numbers nearly all exports hold."""
    if len(text) <= PLAIN_IN_RANGE and "e" not in text and "E" not in text:
        return None
    sign, digits, exponent = Decimal(text).as_tuple()  # no context: exact at any length
    assert isinstance(exponent, int)
    first = next((i for i, d in enumerate(digits) if d), None)
    if first is None:
        return None  # zero, however written
    last = max(i for i, d in enumerate(digits) if d)
    significant = last - first + 1
    if significant > MAX_DIGITS:
        return f"has {significant} significant digits; DynamoDB's numbers have at most {MAX_DIGITS}"
    adjusted = exponent + len(digits) - 1 - first
    if not MIN_EXPONENT <= adjusted <= MAX_EXPONENT:
        return f"is outside DynamoDB's range (magnitude {RANGE_TEXT})"
    return None


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
