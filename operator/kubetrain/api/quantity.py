"""Kubernetes resource quantities ("1800Gi", "500m", "1.5", "2E", "1e3") as exact numbers.

The builders derive requests and `/dev/shm` sizes from instance profiles and compare user values
with what an instance has; doing that on strings would be wrong ("1Gi" > "900Mi"), so quantities
are parsed once into `Decimal`.

Two layers, on purpose: `is_quantity` is the API server's grammar (k8s.io/apimachinery
resource.ParseQuantity, the same one CEL's `isQuantity` uses), so nothing the CRD rejects passes
here; `parse_quantity` then computes the value exactly as the Kubernetes Python client's
`kubernetes.utils.quantity.parse_quantity` does. The `api` layer may not import the client, so the
arithmetic is repeated here and `tests/unit/test_quantity.py` holds the two equal on thousands of
inputs (the client alone is too lenient to be the grammar: it accepts "NaN", "1_0", " 5").
"""

from __future__ import annotations

import re
from decimal import Decimal

# <signedNumber><suffix>: suffix is a binary SI suffix, a decimal SI suffix (note: "E" alone is
# exa, "e"/"E" followed by digits is a decimal exponent), or nothing.
QUANTITY_PATTERN = (
    r"^([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE])?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)

_BINARY_EXPONENT = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_EXPONENT = {"n": -3, "u": -2, "m": -1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}

GI = Decimal(2) ** 30


def is_quantity(value: str) -> bool:
    return _QUANTITY.match(value) is not None


def parse_quantity(value: str | int) -> Decimal:
    """The value of a quantity in base units (cores, bytes); ValueError when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as '8', '500m' or '64Gi'")
    number, suffix = match.group(1), match.group(4) or ""
    if not suffix:
        return Decimal(number)
    if suffix in _BINARY_EXPONENT:
        return Decimal(number) * (Decimal(1024) ** _BINARY_EXPONENT[suffix])
    if suffix[0] in "eE" and len(suffix) > 1:
        return Decimal(number + suffix)  # a decimal exponent: "1e3", "5E-2"
    return Decimal(number) * (Decimal(1000) ** _DECIMAL_EXPONENT[suffix])


def is_positive_quantity(value: str | int) -> bool:
    try:
        return parse_quantity(value) > 0
    except ValueError:
        return False


def gib(n: int) -> str:
    """A whole number of GiB as the quantity string the builders write."""
    return f"{n}Gi"
