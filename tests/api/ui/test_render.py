"""Rendering: visible control characters, dashes, times and durations, the CSP."""

from __future__ import annotations

from datetime import UTC, datetime

from service.api.ui.render import dash, duration, json_text, visible, when


def test_visible_escapes_controls_and_bidi_overrides() -> None:
    assert visible("plain text, tabs\tand\nnewlines") == "plain text, tabs\tand\nnewlines"
    assert visible("a\x00b\x1b[0m\x07\x7f\x85") == "a\\u0000b\\u001b[0m\\u0007\\u007f\\u0085"
    assert visible("abc\u202edef\u2066\u200b\ufeff") == "abc\\u202edef\\u2066\\u200b\\ufeff"
    assert visible("Zoë 東京 ✓") == "Zoë 東京 ✓"


def test_formatting_helpers() -> None:
    assert dash(None) == "\u2013"
    assert dash("") == "\u2013"
    assert dash(0) == "0"
    at = datetime(2024, 5, 1, 12, 3, 4, 567000, tzinfo=UTC)
    assert when(at) == "2024-05-01 12:03:04"
    assert when(at, time_only=True) == "12:03:04.567"
    assert when(None) == "\u2013"
    assert duration(87) == "87 ms"
    assert duration(1234) == "1.23 s"
    assert duration(None) == "\u2013"
    assert json_text({"b": 1, "a": "<x>"}) == '{"a": "<x>", "b": 1}'
