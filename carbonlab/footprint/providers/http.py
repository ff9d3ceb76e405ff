"""GET a JSON document with the standard library, a short timeout and a size cap, and turn every way
it can fail into a :class:`Fault` whose text says what was seen (never a credential).

Only background refresh threads and the ``carbonlab intensity`` command call this; a measured window
never does. ``urllib.request`` and ``http.client`` (tens of ms to import) are imported there, not
when a window first loads the providers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .records import MAX_G_PER_KWH, MIN_G_PER_KWH

MAX_BYTES = 4 * 2**20  # a 72 h, 5-minute WattTime forecast is ~60 kB
MAX_RETRY_AFTER_S = 86400.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

# Fault kinds. The one-time note is keyed on them, so that a fault repeating at every retry is shown
# once, and a different fault is shown again.
TIMEOUT = "timeout"
REFUSED = "refused"
NETWORK = "network"
AUTH = "auth"  # 401, 403
RATE_LIMITED = "rate-limited"  # 429
HTTP_ERROR = "http"  # other 4xx, 5xx
REDIRECT = "redirect"
MALFORMED = "malformed"  # not JSON
TRUNCATED = "truncated"
TOO_LARGE = "too-large"
SHAPE = "shape"  # JSON, but not the document the API documents
RANGE = "range"  # a value outside MIN_G_PER_KWH..MAX_G_PER_KWH
CREDENTIALS = "credentials"  # none configured


class Fault(Exception):
    """A fetch that did not give a usable value. ``str(fault)`` is the sentence for the note."""

    def __init__(
        self,
        kind: str,
        what: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.what = what
        self.endpoint = endpoint
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{what} [{endpoint}]" if endpoint else what)

    @property
    def key(self) -> str:
        """What makes two faults 'the same' for the one-time note: kind and HTTP status."""
        return f"{self.kind}:{self.status}" if self.status else self.kind


def check_range(value: Any, what: str, endpoint: str = "") -> float:
    """``value`` as gCO2e/kWh, or a RANGE/SHAPE fault."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Fault(
            SHAPE, f"unexpected response: {what} is {value!r}, not a number", endpoint=endpoint
        )
    v = float(value)
    if not MIN_G_PER_KWH <= v <= MAX_G_PER_KWH:  # NaN fails this too
        raise Fault(
            RANGE,
            f"value out of range: {what} = {value!r} gCO2e/kWh "
            f"(accepted {MIN_G_PER_KWH:g}-{MAX_G_PER_KWH:g})",
            endpoint=endpoint,
        )
    return v


def retry_after_s(header: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day."""
    if not header:
        return None
    h = header.strip()
    try:
        s = float(h)
    except ValueError:
        import email.utils

        try:
            when = email.utils.parsedate_to_datetime(h)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        s = when.timestamp() - now
    if s != s:  # NaN
        return None
    return min(max(s, 0.0), MAX_RETRY_AFTER_S)


def _no_redirect_handler() -> Any:
    """A redirect would carry the auth header to another host: refuse it."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            raise Fault(REDIRECT, f"unexpected redirect (HTTP {code})", status=code)

    return NoRedirect()


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class Client:
    """GETs JSON below one base URL. ``secrets`` are scrubbed from every fault text, in case a
    server or an exception echoes one."""

    def __init__(self, base_url: str, timeout_s: float, secrets: Sequence[str] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.secrets = tuple(s for s in secrets if s)
        self.requests = 0
        self._opener: Any = None

    def _open(self, req: Any, timeout: float) -> Any:
        import urllib.parse
        import urllib.request

        if self._opener is None:
            host = urllib.parse.urlsplit(self.base_url).hostname or ""
            handlers: list[Any] = [_no_redirect_handler()]
            if host in _LOOPBACK:
                handlers.append(urllib.request.ProxyHandler({}))  # a local server: no proxy
            self._opener = urllib.request.build_opener(*handlers)
        return self._opener.open(req, timeout=timeout)

    def endpoint(self, path: str) -> str:
        """``host:port/path`` for notes: no scheme noise, no query (nothing secret is in either)."""
        import urllib.parse

        u = urllib.parse.urlsplit(self.base_url + path)
        return f"{u.netloc}{u.path}"

    def _scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def get_json(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The parsed JSON body of ``GET base_url + path``; raises :class:`Fault`."""
        import urllib.parse

        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        endpoint = self.endpoint(path)
        try:
            body = self._get(url, headers or {}, endpoint)
        except Fault as f:
            f.endpoint = f.endpoint or endpoint
            f.what = self._scrub(f.what)
            f.args = (f"{f.what} [{f.endpoint}]",)
            raise
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Fault(
                MALFORMED, self._scrub(f"malformed JSON ({e})"), endpoint=endpoint
            ) from None

    def _get(self, url: str, headers: Mapping[str, str], endpoint: str) -> bytes:
        import http.client
        import urllib.error
        import urllib.request

        from carbonlab import __version__

        req = urllib.request.Request(
            url,
            headers={
                "Accept": "application/json",
                "User-Agent": f"carbonlab/{__version__}",
                **headers,
            },
        )
        t = self.timeout_s
        deadline = time.monotonic() + 2 * t  # each socket operation has `t`; the whole read 2 t
        self.requests += 1
        try:
            with self._open(req, t) as resp:
                declared = resp.headers.get("Content-Length")
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = resp.read(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise Fault(TOO_LARGE, f"response larger than {MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise Fault(TIMEOUT, f"timed out reading the response after {2 * t:g} s")
                body = b"".join(chunks)
                if declared is not None and declared.isdigit() and len(body) < int(declared):
                    raise Fault(TRUNCATED, f"truncated response ({len(body)} of {declared} bytes)")
                return body
        except Fault:
            raise
        except urllib.error.HTTPError as e:
            status = e.code
            reason = e.reason if isinstance(e.reason, str) else ""
            label = f"HTTP {status}{' ' + reason if reason else ''}"
            if status == 429:
                ra = retry_after_s(e.headers.get("Retry-After") if e.headers else None, time.time())
                hint = f" (Retry-After {ra:g} s)" if ra is not None else ""
                raise Fault(RATE_LIMITED, label + hint, status=status, retry_after=ra) from None
            if status in (401, 403):
                raise Fault(AUTH, label, status=status) from None
            raise Fault(HTTP_ERROR, label, status=status) from None
        except http.client.IncompleteRead as e:
            raise Fault(
                TRUNCATED, f"truncated response ({len(e.partial)} bytes, then closed)"
            ) from None
        except urllib.error.URLError as e:
            raise _network_fault(e.reason, t) from None
        except (OSError, http.client.HTTPException) as e:  # TimeoutError is an OSError
            raise _network_fault(e, t) from None


def _network_fault(reason: Any, timeout_s: float) -> Fault:
    import http.client
    import socket

    if isinstance(reason, Fault):
        return reason
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return Fault(TIMEOUT, f"timed out after {timeout_s:g} s")
    if isinstance(reason, ConnectionRefusedError):
        return Fault(REFUSED, "connection refused")
    if isinstance(reason, http.client.IncompleteRead):
        return Fault(TRUNCATED, f"truncated response ({len(reason.partial)} bytes, then closed)")
    if isinstance(reason, (http.client.RemoteDisconnected, ConnectionResetError)):
        return Fault(TRUNCATED, "connection closed before a complete response")
    if isinstance(reason, http.client.HTTPException):
        return Fault(MALFORMED, f"malformed HTTP response ({type(reason).__name__})")
    if isinstance(reason, socket.gaierror):
        return Fault(NETWORK, f"cannot resolve the host ({reason.strerror or reason})")
    if isinstance(reason, OSError):
        return Fault(NETWORK, f"network error ({reason.strerror or type(reason).__name__})")
    return Fault(NETWORK, f"network error ({reason})")
