"""Rendering figures headless and writing them: PNG bytes with the figure's title and
caption in the metadata."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from matplotlib.figure import Figure

from gradnap.fileio import atomic_write_bytes

__all__ = ["figure_bytes", "save_figure"]

log = logging.getLogger(__name__)


def figure_bytes(
    fig: Figure,
    fmt: str = "png",
    *,
    dpi: int = 110,
    caption: str | None = None,
    tight: bool = False,
) -> bytes:
    """``fig`` rendered headless (Agg) as ``fmt`` (any format matplotlib knows).

    A PNG carries the software, the figure's title and the caption (``caption``, else the
    one the plot function kept in ``fig.gradnap_meta``) in its metadata. ``tight``: crop
    the figure to what is drawn (``bbox_inches="tight"``).
    """
    from gradnap._version import __version__

    meta_src = getattr(fig, "gradnap_meta", {})
    caption = caption or meta_src.get("caption")
    metadata: dict[str, str] | None = None
    if fmt == "png":
        metadata = {"Software": f"gradnap {__version__}"}
        if meta_src.get("title"):
            metadata["Title"] = str(meta_src["title"])
        if caption:
            metadata["Description"] = caption
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def save_figure(
    fig: Figure, path: str | Path, *, dpi: int = 110, caption: str | None = None
) -> Path:
    """Render ``fig`` headless (Agg) and write it atomically as PNG (or any format
    matplotlib knows from the suffix). The title and caption go into the PNG metadata."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write_bytes(path, figure_bytes(fig, fmt, dpi=dpi, caption=caption))
    log.debug("wrote %s", path)
    return path
