"""Credentials never travel past the provider boundary.

A provider's answer is the outside world's text: a server may echo the token it was sent (in a zone
name, an estimation method, an error message), and a URL may carry ``user:password@`` or a
``?token=`` query. Everything a provider returns (a :class:`~.records.Snapshot`, a fault's sentence,
a cache entry) passes through :func:`scrub` before anything downstream (the Measurement, history,
the comm messages, the disk cache, ``carbonlab intensity``) can see it, so none of them can carry a
secret. Each configured secret is replaced by ``***``, and so are URL userinfo, secret-looking query
parameters and ``Bearer``/``Basic`` credentials.

>>> scrub_text("bad token abc123 at https://u:p@h/x?api_key=abc123&zone=FR", ("abc123",))
'bad token *** at https://***@h/x?api_key=***&zone=FR'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from ... import _record

MASK = "***"
# Shorter strings are not treated as secrets to replace (they would mangle ordinary words); a
# credential that short is still never sent anywhere but its request header.
MIN_SECRET_LEN = 4

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"'<>]+@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|auth|signature|sig|"
    r"credential|session)[a-z0-9_.-]*)=)[^&#\s\"'<>]*"
)
# "Bearer <credential>": 8+ characters with a digit (so "token received" stays readable).
_AUTH_HEADER = re.compile(
    r"(?i)\b(bearer|basic|token)(\s+)(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,}"
)


def secret_values(values: Iterable[str | None]) -> tuple[str, ...]:
    """The values worth replacing, longest first (so a secret containing another is masked whole)."""
    out = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LEN}
    return tuple(sorted(out, key=len, reverse=True))


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(r"\1" + MASK + "@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1" + MASK, text)
    if " " in text:
        text = _AUTH_HEADER.sub(r"\1\2" + MASK, text)
    return text


def scrub(obj: Any, secrets: tuple[str, ...] = ()) -> Any:
    """``obj`` with every string in it scrubbed: str, list, tuple, dict (keys and values) and
    dataclasses and carbonlab's records (rebuilt with ``replace``). Returns ``obj`` itself when nothing
    changed, so a clean snapshot keeps its identity (providers memoise on it)."""
    if isinstance(obj, str):
        t = scrub_text(obj, secrets)
        return obj if t == obj else t
    if isinstance(obj, (bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, (list, tuple)):
        items = [scrub(x, secrets) for x in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items) if isinstance(obj, list) or type(obj) is tuple else obj
    if isinstance(obj, dict):
        out = {scrub(k, secrets): scrub(v, secrets) for k, v in obj.items()}
        if len(out) == len(obj) and all(
            k1 is k2 and out[k1] is obj[k2] for k1, k2 in zip(out, obj)
        ):
            return obj
        return out
    if not isinstance(obj, type) and (dataclasses.is_dataclass(obj) or _record.is_record(obj)):
        module = _record if _record.is_record(obj) else dataclasses
        changes = {}
        for f in module.fields(obj):
            v = getattr(obj, f.name)
            w = scrub(v, secrets)
            if w is not v:
                changes[f.name] = w
        return module.replace(obj, **changes) if changes else obj
    return obj
