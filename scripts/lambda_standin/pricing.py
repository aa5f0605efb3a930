"""DynamoDB's item sizes and capacity units, by its sizing rules (approximate): what the counting
proxy prices each read and write with."""

from __future__ import annotations

import base64
import math
import re


# Approximate, by DynamoDB's sizing rules as tests/aws/dynamodb_size.rs states them: an item is the
# sum over its attributes of the name's UTF-8 bytes and the value's size; S: UTF-8 bytes; N: 1 byte
# per 2 significant digits, rounded up, + 1 (+ 1 if negative); B: raw bytes; BOOL, NULL: 1; sets:
# the sum of their elements; L and M: 3 + per element its size (and key, for M) + 1. The figures
# agree with the repository's cost test; a bill may round differently.

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def number_size(number: str) -> int:
    mantissa = re.split("[eE]", number)[0]
    digits = "".join(c for c in mantissa if c.isdigit()).strip("0")
    return math.ceil(len(digits) / 2) + 1 + (1 if mantissa.strip().startswith("-") else 0)


def value_size(value: dict) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "N":
        return number_size(data)
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in data)
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + value_size(v) + 1 for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def read_units(total_bytes: int, consistent: bool) -> float:
    """One read (a GetItem, an item of a BatchGetItem, a Query page): per started 4 KB, at least 1;
    half for an eventually consistent read."""
    units = max(1, math.ceil(total_bytes / READ_UNIT_BYTES))
    return units if consistent else units / 2


def standard_write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))
