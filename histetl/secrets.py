"""Database URIs and DSNs without their secrets: the one place that decides what is shown.

Every URI or DSN histetl shows (reports, logs, errors, `verify`/`query`/`status` output) goes
through `redact`; every message that may echo one (a driver error) goes through `scrub`, which
also replaces the literal password wherever it appears. Understood forms, as libpq reads them:

- URIs: `postgresql://user:PASSWORD@host:port/db?password=PASSWORD&sslpassword=...`, with
  percent-encoded parts; also `duckdb:///path` and any other URL (a gateway).
- key=value DSNs: `host=h user=u password='a b\\'c' dbname=d` (libpq's grammar: values are
  bare words or single-quoted, backslash escapes the next character).

Object-storage secrets come from the environment (`AWS_SECRET_ACCESS_KEY`, ...), never from
a URI: `scrub_env` masks their values in any message.

Parsing is a small exact implementation of libpq's `conninfo_parse` (psycopg's
`conninfo_to_dict` would need psycopg at run time; the edge cases are tested instead).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from histetl.errors import ConfigError

MASK = "***"
SECRET_KEYS = frozenset({"password", "sslpassword"})
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)


@dataclass(frozen=True)
class DsnItem:
    key: str
    value: str  # unescaped
    start: int  # span of the value as written (quotes included) in the DSN
    end: int


def is_dsn(text: str) -> bool:
    """libpq: a string that is not a URI but contains '=' is a key=value connection string."""
    return _URI.match(text) is None and "=" in text


def parse_dsn(dsn: str) -> list[DsnItem]:
    """libpq's key=value grammar. Raises ConfigError (without echoing any value) when libpq
    would refuse the string."""
    items: list[DsnItem] = []
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            return items
        key_start = i
        while i < n and dsn[i] != "=" and not dsn[i].isspace():
            i += 1
        key = dsn[key_start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            raise _dsn_error(f'missing "=" after "{_safe_key(key)}"')
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        value_start = i
        chars: list[str] = []
        if i < n and dsn[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise _dsn_error(f'unterminated quoted value of "{_safe_key(key)}"')
                if dsn[i] == "\\":
                    i += 1
                    if i < n:
                        chars.append(dsn[i])
                        i += 1
                    continue
                if dsn[i] == "'":
                    i += 1
                    break
                chars.append(dsn[i])
                i += 1
        else:
            while i < n and not dsn[i].isspace():
                if dsn[i] == "\\":
                    i += 1
                    if i < n:
                        chars.append(dsn[i])
                        i += 1
                else:
                    chars.append(dsn[i])
                    i += 1
        items.append(DsnItem(key, "".join(chars), value_start, i))


def _safe_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", key) else "..."


def _dsn_error(what: str) -> ConfigError:
    return ConfigError(
        f"bad PostgreSQL connection string: {what}",
        where="--db",
        hint="write key=value pairs separated by spaces; quote values with spaces as "
        "key='a b' (or use a postgresql:// URI)",
    )


def dsn_dict(dsn: str) -> dict[str, str]:
    """The DSN's keys and values (the last one wins, as in libpq)."""
    return {item.key: item.value for item in parse_dsn(dsn)}


@dataclass(frozen=True)
class _UriParts:
    scheme: str
    userinfo: str | None  # as written (percent-encoded)
    hosts: str  # as written
    path: str  # as written, without the leading '/'
    query: list[tuple[str, str, int, int]]  # (key, raw value, start, end) in the original
    userinfo_span: tuple[int, int] | None


def _split_uri(uri: str) -> _UriParts | None:
    match = _URI.match(uri)
    if match is None:
        return None
    rest_at = match.start("rest")
    rest = match.group("rest")
    # authority ends at the first '/', '?' or '#'
    cut = min((p for p in (rest.find(c) for c in "/?#") if p >= 0), default=len(rest))
    authority = rest[:cut]
    # libpq ends the userinfo at the first '@'; a URL parser at the last. Hide up to the last
    # so that a raw '@' in a password is hidden under either reading.
    at = authority.rfind("@")
    userinfo = authority[:at] if at >= 0 else None
    hosts = authority[at + 1 :] if at >= 0 else authority
    tail = rest[cut:]
    path, query_text = tail, ""
    if "?" in tail:
        path, query_text = tail.split("?", 1)
    query_text = query_text.split("#", 1)[0]
    query: list[tuple[str, str, int, int]] = []
    q_start = rest_at + cut + len(path) + 1
    offset = 0
    for pair in query_text.split("&") if query_text else []:
        key, sep, value = pair.partition("=")
        value_start = q_start + offset + len(key) + len(sep)
        query.append((unquote(key), value, value_start, value_start + len(value)))
        offset += len(pair) + 1
    return _UriParts(
        match.group("scheme").lower(),
        userinfo,
        hosts,
        path[1:] if path.startswith("/") else path,
        query,
        (rest_at, rest_at + at) if at >= 0 else None,
    )


def passwords(uri: str) -> list[str]:
    """Every secret in the URI or DSN, in each form it may appear (as written, decoded)."""
    found: list[str] = []
    parts = _split_uri(uri)
    if parts is not None:
        if parts.userinfo is not None and ":" in parts.userinfo:
            raw = parts.userinfo.split(":", 1)[1]
            found += [raw, unquote(raw)]
        for key, raw, _s, _e in parts.query:
            if key in SECRET_KEYS:
                found += [raw, unquote(raw)]
    elif is_dsn(uri):
        try:
            items = parse_dsn(uri)
        except ConfigError:  # unparsable: hide everything after any secret key
            items = []
            for match in re.finditer(r"(?:ssl)?password\s*=\s*(\S+)", uri):
                found.append(match.group(1))
        for item in items:
            if item.key in SECRET_KEYS:
                found += [item.value, uri[item.start : item.end]]
    return sorted({p for p in found if p}, key=len, reverse=True)


def redact(uri: str) -> str:
    """The URI or DSN with every password replaced by ***; everything else as written."""
    parts = _split_uri(uri)
    spans: list[tuple[int, int]] = []
    if parts is not None:
        if parts.userinfo_span is not None and parts.userinfo and ":" in parts.userinfo:
            start, end = parts.userinfo_span
            spans.append((start + parts.userinfo.index(":") + 1, end))
        spans += [(s, e) for key, _raw, s, e in parts.query if key in SECRET_KEYS and e > s]
    elif is_dsn(uri):
        try:
            spans = [(i.start, i.end) for i in parse_dsn(uri) if i.key in SECRET_KEYS]
        except ConfigError:
            return re.sub(r"((?:ssl)?password\s*=\s*)\S+", r"\1" + MASK, uri)
    else:
        return uri
    out = uri
    for start, end in sorted(spans, reverse=True):
        out = out[:start] + MASK + out[end:]
    return out


def mask(text: str, secret: str) -> str:
    """`text` with every occurrence of a literal secret (an API key, a password) as ***."""
    return text.replace(secret, MASK) if secret else text


def scrub(text: str, uri: str) -> str:
    """`text` (e.g. a driver's error message) with the URI shown redacted and every literal
    password value replaced by ***."""
    if not uri:
        return text
    text = text.replace(uri, redact(uri))
    for secret in passwords(uri):
        text = mask(text, secret)
    return text


# Object storage: the secrets the standard AWS variables hold (histetl.objstore reads them).
ENV_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def scrub_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with the value of every secret environment variable (ENV_SECRETS) replaced by
    ***: a storage client's error may echo a signed request."""
    env = os.environ if environ is None else environ
    for name in ENV_SECRETS:
        value = env.get(name, "")
        if len(value) >= 4:  # a shorter one would mask ordinary text
            text = text.replace(value, MASK)
    return text
