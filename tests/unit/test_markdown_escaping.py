"""The PR comment never lets request text ping people, inject HTML or break tables."""

from rescue_runner.reporting.validation import _md_cell


def test_request_text_is_inert_in_markdown() -> None:
    out = _md_cell("ping @channel <img src=x onerror=alert(1)> a|b\nnext")
    assert "@channel" not in out and "@\u200bchannel" in out
    assert "<img" not in out and "&lt;img" in out
    assert "a\\|b" in out and "\n" not in out
