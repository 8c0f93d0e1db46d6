"""Kubernetes resource quantities ("1800Gi", "500m", "1.5") as exact numbers.

The builders derive requests and `/dev/shm` sizes from instance profiles and compare user values
with what an instance has; doing that on strings would be wrong ("1Gi" > "900Mi"), so quantities
are parsed once into `Decimal` with the same suffix rules the API server applies.
"""

from __future__ import annotations

import re
from decimal import Decimal

# The API server's grammar (k8s.io/apimachinery/pkg/api/resource), without the rarely used
# decimal-exponent forms mixed with suffixes.
QUANTITY_PATTERN = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)

_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}

GI = Decimal(2) ** 30


def is_quantity(value: str) -> bool:
    return _QUANTITY.match(value) is not None


def parse_quantity(value: str | int) -> Decimal:
    """The value of a quantity in base units (cores, bytes); ValueError when it is not one."""
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as '8', '500m' or '64Gi'")
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    return Decimal(number) * _SUFFIX[suffix]


def gib(n: int) -> str:
    """A whole number of GiB as the quantity string the builders write."""
    return f"{n}Gi"
