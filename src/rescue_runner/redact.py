"""Credentials out of everything rescue-runner stores or prints.

A URL may carry a secret (``https://user:token@host/...``, ``?access_token=...``); an
error text from git, dbt or Prefect may quote such a URL. Every boundary that stores or
prints one (audit events, ``summary.json``, artifacts, logs, alerts, crash logs, error
messages) passes it through :func:`redact_url` or :func:`redact`.

* ``redact_url``: drops ``user:password@`` and replaces the values of token-like query
  parameters (``token``, ``access_token``, ``api_key``, ``X-Amz-Signature``, ...) with ``***``.
* ``redact``: the same for every URL inside a text, plus every value registered with
  :func:`register_secret` (e.g. a repository token read from a Prefect Secret block,
  or the password of ``PREFECT_API_URL``), in plain and percent-encoded form.

Pure standard library: importable anywhere, including the flow on a worker.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter registered values would mask ordinary words
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_SECRET_KEY = re.compile(r"(?i)(token|secret|passw|pwd|key|sig|auth|credential|session|code)")
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
_secrets: set[str] = set()
_lock = threading.Lock()


def redact_url(url: str) -> str:
    """``url`` without user info and with token-like query values masked.

    ``https://ci:s3cr3t@git.example.com/repo.git?private_token=abc`` becomes
    ``https://git.example.com/repo.git?private_token=***``. Text that is not a URL
    with a scheme comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    _user, authority, tail = _split(rest)
    if "?" in tail or ";" in tail:
        tail = _QUERY_PAIR.sub(_mask_pair, tail)
    return f"{scheme}://{authority}{tail}"


def redact(text: str) -> str:
    """``text`` with every URL passed through :func:`redact_url` and registered secrets masked."""
    if not text:
        return text
    out = _URL.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    for value in secrets:
        if value in out:
            out = out.replace(value, MASK)
    return out


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its percent-encoded form) in every later :func:`redact` of this process."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.update(v for v in {value, quote(value, safe=""), unquote(value)}
                        if len(v) >= MIN_SECRET_LENGTH)


def register_url(url: str | None) -> None:
    """Register the credentials a URL carries (user info, token-like query values) as secrets.

    Call it where a configured URL is read (API URL, repository URL, webhook URL), so
    the credentials stay masked even where a library quotes them without the URL.
    """
    if not url or "://" not in url:
        return
    rest = url.partition("://")[2]
    userinfo, _authority, tail = _split(rest)
    if userinfo:
        user, _, password = userinfo.partition(":")
        register_secret(password or user)
        if password:
            register_secret(userinfo)
    for _sep, key, value in _QUERY_PAIR.findall(tail):
        if _SECRET_KEY.search(key):
            register_secret(value)


def forget_secrets() -> None:
    """Drop every registered secret (for tests)."""
    with _lock:
        _secrets.clear()


def _split(rest: str) -> tuple[str | None, str, str]:
    """``user:password@host/path?q`` (after the scheme) -> user info, host part, the rest."""
    authority, tail = _authority(rest)
    at = authority.rfind("@")
    if at != -1:
        return authority[:at], authority[at + 1:], tail
    if "@" in tail and ":" in authority and not authority.rpartition(":")[2].isdigit():
        # A password holding an unescaped '/', '?' or '#' ends the authority early
        # (``user:pa/ss@host``): everything up to the first '@' is user info then.
        at = len(authority) + tail.find("@")
        host, tail = _authority(rest[at + 1:])
        return rest[:at], host, tail
    return None, authority, tail


def _authority(rest: str) -> tuple[str, str]:
    cut = min((i for i in (rest.find(ch) for ch in "/?#") if i != -1), default=len(rest))
    return rest[:cut], rest[cut:]


def _mask_pair(m: re.Match[str]) -> str:
    sep, key, value = m.groups()
    if value and _SECRET_KEY.search(unquote(key)):
        return f"{sep}{key}={MASK}"
    return m.group(0)
