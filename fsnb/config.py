"""Where a store keeps its online values and its log: embedded files or Redis.

Read from (first wins) the FeatureStore(...) arguments, then ``fsnb.toml`` in the
store directory::

    [online]
    url = "redis://127.0.0.1:6379/0"
    [log]
    url = "redis://127.0.0.1:6379/0"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsnb.errors import StoreError

CONFIG_FILE = "fsnb.toml"


@dataclass(frozen=True)
class StoreConfig:
    online: str | None = None  # None: SQLite file in the store directory
    log: str | None = None  # None: SQLite file in the store directory


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError) as exc:
        msg = f"cannot read {path}: {exc}; fix the file or remove it"
        raise StoreError(msg) from None


def _url(section: Any, where: Path, name: str) -> str | None:
    if section is None:
        return None
    if isinstance(section, str):
        return section
    if isinstance(section, dict) and isinstance(section.get("url"), str):
        return str(section["url"])
    msg = f"{where}: '{name}' must be a URL string or a table with url = \"...\""
    raise StoreError(msg)


def load_config(directory: Path, *, online: str | None = None, log: str | None = None) -> StoreConfig:
    file = directory / CONFIG_FILE
    data = _read_toml(file) if file.exists() else {}
    config = StoreConfig(
        online=online or _url(data.get("online"), file, "online"),
        log=log or _url(data.get("log"), file, "log"),
    )
    for what, url in (("online", config.online), ("log", config.log)):
        if url is not None and url != "sqlite" and not url.startswith(("redis://", "rediss://", "unix://")):
            msg = f"{what} store {url!r} is not supported; use 'sqlite' (the default) or a redis:// URL"
            raise StoreError(msg)
    return config


def write_config(directory: Path, config: StoreConfig) -> None:
    lines = []
    if config.online:
        lines += ["[online]", f'url = "{config.online}"', ""]
    if config.log:
        lines += ["[log]", f'url = "{config.log}"', ""]
    (directory / CONFIG_FILE).write_text("\n".join(lines))
