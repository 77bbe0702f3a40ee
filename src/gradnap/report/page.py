"""A self-contained HTML page: headings, paragraphs, tables and figures.

:class:`Report` collects them and writes a directory with ``index.html`` (opens offline:
images are base64 ``data:`` URIs, styles inline) and one PNG per figure, each written
atomically. It knows nothing of GradNAPs; :mod:`gradnap.report.paper` fills it.
"""

from __future__ import annotations

import base64
import html
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gradnap.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["Report"]

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; box-sizing: border-box; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; max-width: 100%; }
th { overflow-wrap: anywhere; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code, pre { background: #f6f6f6; }
pre { padding: 0.6em; white-space: pre-wrap; overflow-wrap: anywhere; }
p, figcaption { overflow-wrap: anywhere; } td { white-space: nowrap; }
table.kv td { text-align: left; vertical-align: top; white-space: normal; overflow-wrap: anywhere; }
table.kv th { text-align: left; white-space: nowrap; }
"""


@dataclass
class _Item:
    kind: str  # "heading", "text", "figure", "table", "kv", "pre"
    payload: dict = field(default_factory=dict)


@dataclass
class Report:
    """An HTML report under construction."""

    title: str
    items: list[_Item] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.items.append(_Item("heading", {"text": text}))

    def text(self, text: str) -> None:
        self.items.append(_Item("text", {"text": text}))

    def pre(self, text: str) -> None:
        self.items.append(_Item("pre", {"text": text}))

    def figure(self, name: str, fig, caption: str, dpi: int = 110) -> None:
        """Add a matplotlib figure as ``<name>.png``, rendered now (cropped to what is
        drawn, the caption in the PNG metadata); a pyplot figure is closed."""
        from gradnap.figures.save import figure_bytes

        png = figure_bytes(fig, dpi=dpi, caption=caption, tight=True)
        plt = sys.modules.get("matplotlib.pyplot")  # only pyplot keeps figures open
        if plt is not None:
            plt.close(fig)
        self.items.append(_Item("figure", {"name": name, "png": png, "caption": caption}))

    def table(self, header: list[str], rows: list[list[object]], caption: str = "") -> None:
        self.items.append(_Item("table", {"header": header, "rows": rows, "caption": caption}))

    def key_values(self, pairs: list[tuple[str, object]], columns: int = 2) -> None:
        """A compact table of ``(name, value)`` pairs, ``columns`` pairs per row (e.g.
        provenance: a few lines instead of one value per line)."""
        self.items.append(_Item("kv", {"pairs": pairs, "columns": max(1, columns)}))

    def write(self, out_dir: str | Path) -> Path:
        """Write ``index.html`` and the PNGs into ``out_dir``; returns the path of index.html."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for item in self.items:
            p = item.payload
            if item.kind == "heading":
                parts.append(f"<h2>{html.escape(p['text'])}</h2>")
            elif item.kind == "text":
                parts.append(f"<p>{html.escape(p['text'])}</p>")
            elif item.kind == "pre":
                parts.append(f"<pre>{html.escape(p['text'])}</pre>")
            elif item.kind == "figure":
                atomic_write_bytes(out_dir / f"{p['name']}.png", p["png"])
                data = base64.b64encode(p["png"]).decode("ascii")
                parts.append(
                    f'<figure id="{html.escape(p["name"])}"><img alt="{html.escape(p["name"])}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{html.escape(p["caption"])}'
                    "</figcaption></figure>"
                )
            elif item.kind == "table":
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in p["header"])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                    for row in p["rows"]
                )
                cap = f"<caption>{html.escape(p['caption'])}</caption>" if p["caption"] else ""
                parts.append(
                    f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                )
            elif item.kind == "kv":
                cells = [
                    f"<th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td>"
                    for k, v in p["pairs"]
                ]
                n = p["columns"]
                rows = [
                    "<tr>" + "".join(cells[i : i + n]) + "</tr>" for i in range(0, len(cells), n)
                ]
                parts.append(f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>')
        parts.append("</body></html>")
        index = out_dir / "index.html"
        atomic_write_text(index, "\n".join(parts) + "\n")
        log.info("report written to %s", index)
        return index


def _fmt(value: object) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return "undefined" if value != value else f"{value:.3f}"
    return str(value)
