"""Where a store keeps its online values and its log: embedded files or Redis.

Read from (first wins) the FeatureStore(...) arguments, then ``fsnb.toml`` in the
store directory::

    [online]
    url = "redis://127.0.0.1:6379/0"
    [log]
    url = "redis://127.0.0.1:6379/0"

The file has a closed schema: the two tables above (or ``online = "URL"`` /
``log = "URL"`` as plain strings) and nothing else. Anything else (a TOML syntax
error, a misspelled key, a number where a URL belongs, a port out of range) is one
error naming the file, because a misspelled ``[onlin]`` silently ignored would serve
online values from another place than the one the user configured.

A URL may carry a Redis password; ``redact_url`` is what every message and repr shows.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fsnb.errors import StoreError

CONFIG_FILE = "fsnb.toml"
DEFAULT_STORE = ".fsnb"
STORE_ENV = "FSNB_STORE"
_SECTIONS = ("online", "log", "offline")
_SECTION_KEYS = ("url",)
_OFFLINE_KEYS = ("engine", "warehouse")
ENGINES = ("duckdb", "spark")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_SECRET_PARAM = re.compile(r"pass|secret|token|auth", re.IGNORECASE)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)@", re.DOTALL)  # greedy: up to the last '@'
_SECRET_VALUE = re.compile(r"([?&][^=&#]*(?:pass|secret|token|auth)[^=&#]*=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True)
class StoreConfig:
    online: str | None = None  # None: SQLite file in the store directory
    log: str | None = None  # None: SQLite file in the store directory
    offline: str = "duckdb"  # the offline engine: "duckdb" (offline.duckdb) or "spark"
    warehouse: str | None = None  # the Spark engine's Delta tables (a directory or a URI)

    def __repr__(self) -> str:
        engine = "" if self.offline == "duckdb" else f", offline={self.offline!r}, warehouse={_shown(self.warehouse)}"
        return f"StoreConfig(online={_shown(self.online)}, log={_shown(self.log)}{engine})"


def store_path(path: str | os.PathLike[str] | None = None, *, base: str | os.PathLike[str] | None = None) -> Path:
    """The store directory every fsnb entry point uses: path if given, else $FSNB_STORE
    (when set and not empty), else ``.fsnb``; a relative one is taken from base (default:
    the working directory). Absolute, with ``~`` expanded; nothing is created."""
    chosen = os.fspath(path) if path is not None else os.environ.get(STORE_ENV) or DEFAULT_STORE
    resolved = Path(chosen).expanduser()
    if base is not None and not resolved.is_absolute():
        resolved = Path(base).expanduser() / resolved
    return resolved.resolve()


def _shown(url: str | None) -> str:
    return "None" if url is None else repr(redact_url(url))


def redact_url(url: str) -> str:
    """url with its password (``redis://user:PASSWORD@host``, ``?password=...``) replaced
    by ``***``: the only form of a backend URL that fsnb prints.

    Works on the text, not on a parse, so that a URL too broken to parse (a ``#`` or a
    ``/`` in an unencoded password) is hidden as well: everything between ``//`` and the
    last ``@`` but a user name goes; a lone ``redis://WORD@`` goes too (it may be a
    password written without the colon)."""
    shown = url
    match = _USERINFO.match(url)
    if match:
        scheme, userinfo = match.groups()
        user, has_password, _ = userinfo.partition(":")
        hidden = f"{user}:***" if has_password and "/" not in user else "***"
        shown = f"{scheme}{hidden}@{url[match.end():]}"
    return _SECRET_VALUE.sub(r"\1***", shown)


def scrub(text: str, url: str | None) -> str:
    """text (say a client library's error message) with url's secrets replaced by ``***``."""
    if not url:
        return text
    text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _secrets(url: str) -> list[str]:
    """The secret parts of url, raw and percent-decoded, longest first."""
    from urllib.parse import unquote

    found = []
    match = _USERINFO.match(url)
    if match:
        userinfo = match.group(2)
        found.append(userinfo.partition(":")[2] if ":" in userinfo else userinfo)
    found += [m.group(0).split("=", 1)[1] for m in _SECRET_VALUE.finditer(url)]
    return sorted({s for raw in found for s in (raw, unquote(raw)) if len(s) >= 3}, key=len, reverse=True)


def check_url(url: str, where: str) -> str:
    """url when it names a backend fsnb can open; otherwise a StoreError saying why.

    where: what the message names ("the online store URL", "/path/fsnb.toml: [online] url")."""
    if url == "sqlite":
        return url
    shown = redact_url(url)
    if not url or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        msg = f"{where} {shown!r} is empty or holds spaces or control characters; write it like redis://host:6379/0"
        raise StoreError(msg)
    if "#" in url:  # no backend URL has a fragment: an unencoded '#' in a password would cut it
        msg = f"{where} {shown!r} holds a '#'; write it percent-encoded as %23"
        raise StoreError(msg)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in _REDIS_SCHEMES:
        msg = f"{where} {shown!r} is not supported; use 'sqlite' (the default) or a redis:// URL"
        raise StoreError(msg)
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0..65535
    except ValueError as exc:
        msg = f"{where} {shown!r} is not a valid URL ({exc}); write it like redis://host:6379/0"
        raise StoreError(msg) from None
    db_param = dict(parse_qsl(parts.query)).get("db")
    if scheme == "unix":
        if not parts.path:
            msg = f"{where} {shown!r} names no socket; write it like unix:///run/redis.sock?db=0"
            raise StoreError(msg)
        databases = [db_param]
    else:
        if not parts.hostname:
            msg = f"{where} {shown!r} names no host; write it like redis://host:6379/0"
            raise StoreError(msg)
        if port is not None and not 1 <= port <= 65535:
            msg = f"{where} {shown!r} has port {port}; a port is 1 to 65535 (Redis' default is 6379)"
            raise StoreError(msg)
        databases = [parts.path.strip("/"), db_param]
    for value in databases:
        if value and not (value.isascii() and value.isdigit()):
            msg = f"{where} {shown!r} has database {value!r}; a Redis database is a number, as in redis://host:6379/0"
            raise StoreError(msg)
    return url


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        msg = f"cannot read {path}: {reason}; fix the file or remove it"
        raise StoreError(msg) from None


def _url(section: Any, where: Path, name: str) -> str | None:
    if section is None:
        return None
    if isinstance(section, str):
        return check_url(section, f"{where}: {name}")
    if isinstance(section, dict):
        unknown = sorted(set(section) - set(_SECTION_KEYS))
        if unknown:
            msg = f"{where}: [{name}] has unknown key {unknown[0]!r}; it takes only url = \"redis://host:6379/0\""
            raise StoreError(msg)
        if isinstance(section.get("url"), str):
            return check_url(str(section["url"]), f"{where}: [{name}] url")
    msg = f"{where}: '{name}' must be a URL string or a table with url = \"...\""
    raise StoreError(msg)


def check_engine(engine: str, where: str) -> str:
    """engine when it names an offline engine fsnb has; otherwise a StoreError."""
    if engine not in ENGINES:
        msg = f"{where} {engine!r:.60} is unknown; use 'duckdb' (the default) or 'spark'"
        raise StoreError(msg)
    return engine


def check_warehouse(uri: str, where: str) -> str:
    """uri when it can name a Spark engine's warehouse: a directory or scheme://... with no
    spaces, control characters, fragment or query; otherwise a StoreError."""
    shown = redact_url(uri)
    if not uri or uri != uri.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in uri):
        msg = f"{where} {shown!r:.80} is empty or holds control characters or edge spaces; give a directory or a URI like s3://bucket/features"
        raise StoreError(msg)
    if "#" in uri or "?" in uri:
        msg = f"{where} {shown!r:.80} holds a '#' or '?'; a warehouse is a directory or a URI like s3://bucket/features (percent-encode those)"
        raise StoreError(msg)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if scheme is None and "://" in uri:
        msg = f"{where} {shown!r:.80} has a malformed scheme; write it like s3://bucket/features"
        raise StoreError(msg)
    if scheme is not None and "@" in uri.split("/", 3)[2]:
        msg = f"{where} {shown!r:.80} holds credentials; give them to Spark (its Hadoop settings), not in the URI"
        raise StoreError(msg)
    return uri


def _local(uri: str, base: Path) -> str:
    """A warehouse directory made absolute (a relative one in fsnb.toml is the store's); URIs as given."""
    if "://" in uri:
        return uri
    path = Path(uri).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _offline(section: Any, where: Path) -> tuple[str | None, str | None]:
    if section is None:
        return None, None
    if not isinstance(section, dict):
        msg = f"{where}: 'offline' must be a table: [offline] engine = \"spark\", warehouse = \"...\""
        raise StoreError(msg)
    unknown = sorted(set(section) - set(_OFFLINE_KEYS))
    if unknown:
        msg = f"{where}: [offline] has unknown key {unknown[0]!r}; it takes only engine = \"duckdb\"|\"spark\" and warehouse = \"...\""
        raise StoreError(msg)
    values = []
    for key in _OFFLINE_KEYS:
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            msg = f"{where}: [offline] {key} must be a string, not {type(value).__name__}"
            raise StoreError(msg)
        values.append(value)
    engine, warehouse = values
    return (
        check_engine(engine, f"{where}: [offline] engine") if engine is not None else None,
        check_warehouse(warehouse, f"{where}: [offline] warehouse") if warehouse is not None else None,
    )


def load_config(
    directory: Path,
    *,
    online: str | None = None,
    log: str | None = None,
    offline: str | None = None,
    warehouse: str | None = None,
) -> StoreConfig:
    file = directory / CONFIG_FILE
    data = _read_toml(file) if file.exists() else {}
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        msg = f"{file}: unknown setting {unknown[0]!r}; fsnb.toml knows only [online], [log] (each with url = \"...\") and [offline]"
        raise StoreError(msg)
    file_online, file_log = _url(data.get("online"), file, "online"), _url(data.get("log"), file, "log")
    file_engine, file_warehouse = _offline(data.get("offline"), file)
    engine = check_engine(offline, "the offline engine") if offline else file_engine or "duckdb"
    chosen = _local(check_warehouse(warehouse, "the warehouse"), Path.cwd()) if warehouse else None
    chosen = chosen or (_local(file_warehouse, directory) if file_warehouse else None)
    if engine == "spark" and chosen is None:
        msg = "the Spark engine needs a warehouse; pass warehouse=\"DIR or URI\" or set [offline] warehouse in fsnb.toml"
        raise StoreError(msg)
    if engine == "duckdb" and warehouse:
        msg = "a warehouse is for the Spark engine; pass offline=\"spark\" too, or drop warehouse="
        raise StoreError(msg)
    return StoreConfig(
        online=check_url(online, "the online store URL") if online else file_online,
        log=check_url(log, "the log URL") if log else file_log,
        offline=engine,
        warehouse=chosen if engine == "spark" else None,
    )


def toml_string(text: str) -> str:
    """text as a TOML basic string (quoted, every escape TOML requires)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_config(directory: Path, config: StoreConfig) -> None:
    """Write fsnb.toml all at once (a temporary file renamed over it): a reader sees the
    old file or the new one, never half of one."""
    lines = []
    for name, url in (("online", config.online), ("log", config.log)):
        if url:
            check_url(url, f"the {name} URL")
            lines += [f"[{name}]", f"url = {toml_string(url)}", ""]
    if config.offline != "duckdb" and config.warehouse:
        check_warehouse(config.warehouse, "the warehouse")
        lines += ["[offline]", f"engine = {toml_string(config.offline)}", f"warehouse = {toml_string(config.warehouse)}", ""]
    fd, tmp = tempfile.mkstemp(prefix=".fsnb.toml.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / CONFIG_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
