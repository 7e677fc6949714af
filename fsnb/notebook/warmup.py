"""Start vl-convert's JavaScript runtime early: the explorer's first static render costs a
second or more otherwise. No heavy imports here (the point is to start before them)."""

from __future__ import annotations

import threading

_warmup: threading.Thread | None = None


def warm_up_renderer() -> threading.Thread:
    """Start vl-convert's JavaScript runtime in the background (its first render costs a
    second or more); the explorer's static snapshot joins this thread before rendering."""
    global _warmup
    if _warmup is None:
        _warmup = threading.Thread(target=_render_once, name="fsnb-vl-convert-warmup", daemon=True)
        _warmup.start()
    return _warmup


def _render_once() -> None:
    try:
        import vl_convert as vlc

        vlc.vegalite_to_svg({"data": {"values": [{"a": 1}]}, "mark": "point"})
    except Exception:
        pass  # only a warm-up: the real render reports its own errors
