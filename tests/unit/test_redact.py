"""redact: credentials out of URLs and texts (every boundary that stores or prints one uses it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rescue_runner.redact import MASK, forget_secrets, redact, redact_url, register_secret, register_url


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(("url", "expected"), [
    ("https://ci:s3cr3t@git.example.com/data/dbt.git", "https://git.example.com/data/dbt.git"),
    ("https://glpat-xyz@gitlab.example.com/a.git", "https://gitlab.example.com/a.git"),
    ("http://admin:pw@127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
    ("http://u:pa/ss@h:80/x", "http://h:80/x"),  # an unescaped '/' in the password
    ("https://h/a.git?private_token=abc&ref=main", f"https://h/a.git?private_token={MASK}&ref=main"),
    ("https://s3/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&x=1",
     f"https://s3/b/k?X-Amz-Credential={MASK}&X-Amz-Signature={MASK}&x=1"),
    ("https://hooks.example.com/x?api_key=1&access_token=2",
     f"https://hooks.example.com/x?api_key={MASK}&access_token={MASK}"),
    # nothing secret: unchanged
    ("https://host:8080/a/@scope/pkg", "https://host:8080/a/@scope/pkg"),
    ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
    ("file:///tmp/origin.git", "file:///tmp/origin.git"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_every_url_in_a_text() -> None:
    text = ("fatal: unable to access 'https://bot:hunter22@git.example.com/x.git/': 403\n"
            "see http://admin:pw9@127.0.0.1:4200/api/runs and https://h/p?token=tok123.")
    out = redact(text)
    assert "hunter22" not in out and "pw9" not in out and "tok123" not in out
    assert "'https://git.example.com/x.git/': 403" in out
    assert "http://127.0.0.1:4200/api/runs" in out


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("tok/en+1")
    out = redact("header tok/en+1 and encoded tok%2Fen%2B1 and again tok/en+1")
    assert "tok" not in out.replace(MASK, "")
    assert out.count(MASK) == 3


def test_register_url_registers_its_credentials() -> None:
    register_url("https://ci:p4ssw0rd@git.example.com/r.git?access_token=qwerty12")
    out = redact("git said: auth failed for ci with p4ssw0rd (qwerty12)")
    assert "p4ssw0rd" not in out and "qwerty12" not in out


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact("a tab") == "a tab"


def test_error_texts_are_redacted_where_they_are_made() -> None:
    from rescue_runner.errors import RescueError

    err = RescueError("fetch from https://bot:tok-123456@git.example.com/r.git failed",
                      hint="check http://u:pw-98765@h/x")
    assert "tok-123456" not in str(err) and "pw-98765" not in str(err)
    assert "https://git.example.com/r.git" in str(err)


def test_alerts_carry_no_credential_and_authenticate_by_header() -> None:
    import threading
    from datetime import UTC, datetime
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from rescue_runner.config import NotificationSettings
    from rescue_runner.notify import NotifyEvent, notify

    got: list[tuple[str, str, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append((self.path, self.headers.get("Authorization", ""), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://hook:hookpass1@127.0.0.1:{server.server_port}/alerts"
        event = NotifyEvent(kind="failed", request_id="r1", state="failed", at=datetime.now(UTC),
                            reason="clone of https://ci:repopass2@git.example.com/x.git failed; hookpass1")
        assert notify(NotificationSettings(), event, env={"RESCUE_WEBHOOK_URL": url})
    finally:
        server.shutdown()
    (path, auth, body) = got[0]
    assert path == "/alerts" and auth.startswith("Basic ")
    assert b"repopass2" not in body and b"hookpass1" not in body
    assert b"git.example.com/x.git" in body
