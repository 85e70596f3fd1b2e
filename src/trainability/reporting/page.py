"""One self-contained HTML page: a header, summary tiles, sections; images inline, no script.

Every page trainability writes (compare's report, repair's) is built here, so they share one
look. Nothing is fetched when the page opens: images are base64 PNG ``data:`` URIs, the style
is inline, there is no JavaScript and no web font.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "page.html"
>>> _ = write_page(path, "Title", [Section("Numbers", table(["a", "b"], [["1", "2"]]))])
>>> "<table" in path.read_text() and "http" not in path.read_text().split("<body")[1]
True
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

escape = html.escape

STYLE = """
:root { --ink: #1d2433; --muted: #5b6475; --line: #e3e7ee; --panel: #ffffff; --bg: #f5f7fa;
        --accent: #3b6fd8; --good: #1f8a5b; --bad: #c0392b; --warn: #b7791f; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: linear-gradient(120deg, #1d2b4f, #2f4f8f); color: #fff; padding: 28px 0 22px; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 6px; font-size: 26px; font-weight: 650; letter-spacing: -0.01em; }
header p { margin: 0; color: #d7e0f5; }
nav { margin-top: 14px; display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 13px; }
nav a { color: #fff; opacity: .85; text-decoration: none; border-bottom: 1px dotted rgba(255,255,255,.5); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 14px; margin: -18px 0 8px; }
.tile { background: var(--panel); border-radius: 10px; padding: 14px 16px; box-shadow: 0 1px 3px rgba(20,30,60,.12); }
.tile .label { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
.tile .value { font-size: 22px; font-weight: 650; margin: 2px 0; }
.tile .gallery { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 12px; }
.note { font-size: 13px; color: var(--muted); }
section { background: var(--panel); border-radius: 12px; margin: 22px 0; padding: 20px 24px 22px;
          box-shadow: 0 1px 3px rgba(20,30,60,.10); }
section h2 { margin: 0 0 4px; font-size: 19px; }
section .lead { margin: 0 0 14px; color: var(--muted); }
figure { margin: 10px 0 4px; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase;
     letter-spacing: .04em; border-bottom: 2px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: middle; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr:hover td { background: #f8faff; }
.name { white-space: nowrap; }
.chip { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 7px; vertical-align: 0; }
.bar { position: relative; height: 8px; background: #edf0f5; border-radius: 4px; min-width: 90px; }
.bar span { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 4px; background: var(--accent); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.good { background: #e3f4ec; color: var(--good); } .badge.bad { background: #fbe9e7; color: var(--bad); }
.badge.warn { background: #fdf3e1; color: var(--warn); } .badge.neutral { background: #eef1f6; color: var(--muted); }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 18px; }
.note { font-size: 13px; color: var(--muted); }
.order { list-style: none; padding: 0; margin: 0; }
.order li { padding: 5px 0; border-bottom: 1px solid var(--line); }
.order .rel { display: block; text-align: center; color: var(--muted); font-size: 12px; padding: 0; border: 0; }
code { background: #eef1f6; padding: 1px 5px; border-radius: 4px; font-size: 13px; }
pre { background: #1d2433; color: #e8ecf5; padding: 14px 16px; border-radius: 8px; overflow-x: auto;
      font-size: 13px; line-height: 1.45; }
pre code { background: none; padding: 0; color: inherit; }
footer { color: var(--muted); font-size: 12px; padding: 8px 0 40px; }
"""


@dataclass(frozen=True)
class Section:
    """A titled block of the page; ``body`` is HTML (built with the helpers here)."""

    title: str
    body: str
    lead: str | None = None  # one sentence under the title: what to look at
    anchor: str | None = None


@dataclass(frozen=True)
class Tile:
    """A number at the top of the page, with a label and a note."""

    label: str
    value: str
    note: str = ""


def image(png: bytes, alt: str, caption: str | None = None, width: int | None = None) -> str:
    """A PNG embedded as a ``data:`` URI, in a figure with an optional caption."""
    data = base64.b64encode(png).decode("ascii")
    size = f' width="{width}"' if width else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}"{size}>{cap}</figure>'


def chip(color: str, label: str | None = None) -> str:
    """A coloured dot, followed by ``label`` (kept on one line) if given."""
    dot = f'<span class="chip" style="background:{escape(color)}"></span>'
    return dot if label is None else f'<span class="name">{dot}{escape(label)}</span>'


def bar(fraction: float, color: str | None = None) -> str:
    """A horizontal bar filled to ``fraction`` (0-1), for a number in a table."""
    fraction = min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0
    style = f"width:{100 * fraction:.1f}%" + (f";background:{escape(color)}" if color else "")
    return f'<div class="bar"><span style="{style}"></span></div>'


def badge(text: str, tone: str = "neutral") -> str:
    """``tone``: good, bad, warn or neutral."""
    return f'<span class="badge {escape(tone)}">{escape(text)}</span>'


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table; cells are HTML (escape text yourself), ``numeric`` column indices align right."""
    head = "".join(f'<th class="num">{escape(c)}</th>' if i in numeric else f"<th>{escape(c)}</th>" for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def code_block(text: str) -> str:
    """Preformatted code (escaped here), e.g. a snippet to copy."""
    return f"<pre><code>{escape(text)}</code></pre>"


def paragraph(text: str, css: str | None = None) -> str:
    return f'<p class="{css}">{text}</p>' if css else f"<p>{text}</p>"


def _anchor(section: Section, index: int) -> str:
    return section.anchor or f"s{index}"


def render(title: str, sections: Sequence[Section], *, subtitle: str | None = None, tiles: Sequence[Tile] = (),
           footer: str | None = None) -> str:  # fmt: skip
    """The whole page as a string."""
    nav = "".join(f'<a href="#{_anchor(s, i)}">{escape(s.title)}</a>' for i, s in enumerate(sections))
    tile_html = "".join(f'<div class="tile"><div class="label">{escape(t.label)}</div><div class="value">{t.value}</div>'
                        f'<div class="note">{t.note}</div></div>' for t in tiles)  # fmt: skip
    body = "".join(
        f'<section id="{_anchor(s, i)}"><h2>{escape(s.title)}</h2>'
        + (f'<p class="lead">{s.lead}</p>' if s.lead else "") + s.body + "</section>"
        for i, s in enumerate(sections)
    )  # fmt: skip
    stamp = footer or f"Written by trainability on {time.strftime('%Y-%m-%d %H:%M')}."
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><div class="wrap"><h1>{escape(title)}</h1>'
        + (f"<p>{subtitle}</p>" if subtitle else "") + f"<nav>{nav}</nav></div></header>"
        + '<main class="wrap">' + (f'<div class="tiles">{tile_html}</div>' if tiles else "") + body
        + f"<footer>{stamp}</footer></main></body></html>\n"
    )  # fmt: skip


def write_page(path: str | os.PathLike[str], title: str, sections: Sequence[Section], *, subtitle: str | None = None,
               tiles: Sequence[Tile] = (), footer: str | None = None) -> Path:  # fmt: skip
    """Write the page to ``path`` atomically (a reader never sees half a page) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(title, sections, subtitle=subtitle, tiles=tiles, footer=footer), encoding="utf-8")
    os.replace(tmp, path)
    return path
