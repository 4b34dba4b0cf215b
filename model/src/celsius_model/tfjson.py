"""JSON the way TF Serving's REST API writes it (util/json_tensor.cc): doubles with 6
significant digits when that reads back exactly, else 17; whole numbers with ".0"; NaN and
infinities as the bare tokens NaN, Infinity, -Infinity; pretty-printed."""

from __future__ import annotations

import json
import math
from typing import Any


def format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    if float(text) != value:
        text = f"{value:.17g}"
    if all(c.isdigit() or c == "-" for c in text):
        text += ".0"
    return text


def dumps(value: Any, indent: int = 4, level: int = 0) -> str:
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{dumps(str(k))}: {dumps(v, indent, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + ", ".join(dumps(v, indent, level + 1) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
