"""What a right answer from celsius looks like, for the locustfile (kept apart from it so
tests can import it without importing Locust, which monkey-patches the process)."""

from __future__ import annotations

import re

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def expected_celsius(fahrenheit: float) -> float:
    """(f - 32) * 5 / 9 in IEEE double, the order of operations the service uses."""
    return (fahrenheit - 32.0) * 5.0 / 9.0


def check_answer(body: dict, sent, batch: bool, want_model: bool) -> str | None:
    """None when the answer is right, else what is wrong."""
    if not isinstance(body, dict) or not {"fahrenheit", "celsius", "app_id"} <= body.keys():
        return f"missing keys in {body!r}"[:200]
    if not isinstance(body["app_id"], str) or not UUID4.match(body["app_id"]):
        return f"app_id is not a UUIDv4: {body['app_id']!r}"
    if want_model and not (isinstance(body.get("model"), dict) and body["model"].get("version")):
        return "no model name/version in the answer"
    got_f, got_c = body["fahrenheit"], body["celsius"]
    if batch != isinstance(got_c, list):
        return "single/batch shape differs from the request"
    if batch and not (isinstance(got_f, list) and len(got_f) == len(got_c) == len(sent)):
        return "batch answer has the wrong length"
    values = list(zip(sent, got_f, got_c)) if batch else [(sent, got_f, got_c)]
    for f, echoed, c in values:
        if echoed != f or c != expected_celsius(f):
            return f"wrong answer for f={f!r}: celsius={c!r}, expected {expected_celsius(f)!r}"
    return None
