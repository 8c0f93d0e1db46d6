"""api/quantity.py against the Kubernetes Python client's parser (the api layer may not import it).

On every string in the API server's quantity grammar the two must compute the same value; outside
it ours refuses (the client is more lenient: "NaN", " 5", "1_0"). Regression for issue 9: "1Ei"
and "2E" used to crash the operator's resolve step ("invalid literal for int()").
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as client_parse

from kubetrain.api.quantity import is_positive_quantity, is_quantity, parse_quantity

SUFFIXES = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

number = st.builds(
    lambda sign, whole, frac: sign + whole + frac,
    st.sampled_from(["", "+", "-"]),
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{0,6}", fullmatch=True)),
)
exponent = st.builds(
    lambda e, sign, digits: e + sign + digits,
    st.sampled_from(["e", "E"]),
    st.sampled_from(["", "+", "-"]),
    st.from_regex(r"[0-9]{1,2}", fullmatch=True),
)
quantity = st.builds(lambda n, s: n + s, number, st.one_of(st.sampled_from(SUFFIXES), exponent))


@settings(max_examples=3000, deadline=None)
@given(quantity)
def test_grammatical_quantities_equal_the_clients(text: str) -> None:
    assert is_quantity(text)
    assert parse_quantity(text) == client_parse(text)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=12))
def test_any_text_either_equals_the_client_or_is_refused(text: str) -> None:
    if is_quantity(text):
        assert parse_quantity(text) == client_parse(text)
    else:
        with pytest.raises(ValueError):
            parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Ei", Decimal(2) ** 60),
        ("2E", Decimal(2) * 10**18),
        ("1e3", Decimal(1000)),
        ("5E-2", Decimal("0.05")),
        ("500m", Decimal("0.5")),
        ("64Gi", Decimal(64) * 2**30),
        (".5M", Decimal(500000)),
        (8, Decimal(8)),
    ],
)
def test_known_values(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value == client_parse(text)


@pytest.mark.parametrize("text", ["NaN", " 5", "1_0", "Infinity", "1ki", "1e", "1Ki5", "", "--1"])
def test_client_leniencies_are_refused(text: str) -> None:
    assert not is_quantity(text)
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_positive() -> None:
    assert is_positive_quantity("1m") and is_positive_quantity(1)
    assert not any(is_positive_quantity(x) for x in ("0", "0m", "-1", 0, "junk"))
