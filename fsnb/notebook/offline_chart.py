"""alt.JupyterChart with its JavaScript bundled locally by vl-convert (nothing from a CDN),
and following the width of its box.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import altair as alt
from altair import JupyterChart


class OfflineChart(JupyterChart):
    """alt.JupyterChart with its JavaScript bundled locally (no CDN)."""


def _offline_bundle() -> str:
    """vl-convert's self-contained bundle of JupyterChart's front end, cached on disk
    (bundling takes seconds; the cache makes the second explorer open at once)."""
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    source = _follow_width((Path(alt.__file__).parent / "jupyter" / "js" / "index.js").read_text())
    key = hashlib.sha256(f"{alt.__version__}|{getattr(vlc, '__version__', '')}|{source}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fsnb" / f"jupyterchart-{key}.js"
    if cache.exists():
        return cache.read_text()
    lines = source.split("\n")
    while lines and (not lines[0].strip() or lines[0].startswith(("import", "//"))):
        lines.pop(0)  # the CDN imports: vl-convert's bundle provides them
    bundle: str = vlc.javascript_bundle("\n".join(lines), vl_version=vl_version_for_vl_convert())
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(bundle)
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home only costs the bundling time next time
    return bundle


# A chart of width "container" reads its box's width when it is embedded, which in a
# notebook is before the output is attached (width 0), and afterwards only on window
# resizes. This makes it follow its box: a ResizeObserver sets Vega's width signal.
_RESIZE_ANCHOR = "finalize = api.finalize;"
_RESIZE_JS = """
        if (spec.width === "container" && typeof ResizeObserver !== "undefined") {
            let seen = -1;
            const observer = new ResizeObserver(() => {
                const width = el.clientWidth;
                if (width > 0 && width !== seen) {
                    seen = width;
                    api.view.signal("width", width).runAsync();
                }
            });
            observer.observe(el);
            const done = finalize;
            finalize = () => { observer.disconnect(); done(); };
        }
"""


def _follow_width(source: str) -> str:
    if _RESIZE_ANCHOR not in source:
        return source  # another Altair: its charts keep the width they were embedded with
    return source.replace(_RESIZE_ANCHOR, _RESIZE_ANCHOR + _RESIZE_JS, 1)


def ensure_offline() -> None:
    if "_esm" not in OfflineChart.__dict__:
        OfflineChart._esm = _offline_bundle()
