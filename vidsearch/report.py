"""How query results look: the m:ss clock, the terminal table, the JSON and the self-contained HTML report."""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path

from .errors import BadVideo
from .search import Moment
from .text_search import TextMatch


def clock(seconds: float, *, tenths: bool = False, rounding=round) -> str:
    """Seconds as m:ss, or h:mm:ss past an hour; with `tenths`, m:ss.t (h:mm:ss.t). `rounding` turns tenths (or
    seconds) into a whole number: round, or math.floor / math.ceil to show a span outward."""
    scale = 10 if tenths else 1
    whole, tenth = divmod(int(rounding(seconds * scale)), scale)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{text}.{tenth}" if tenths else text


def needs_tenths(end: float, gap: float) -> bool:
    """Whether whole seconds are too coarse for times up to `end` that are `gap` apart: under 10 s (short videos,
    where 0:00-0:00 says nothing), or less than a second apart (a strip of five frames from a 2 s moment)."""
    return end < 10 or gap < 1


def clock_span(start: float, end: float, dash: str = "-") -> str:
    """A moment's span: 0:12-0:20, 1:02:05-1:02:30, and in tenths when needs_tenths says so, rounded outward so a
    moment never looks empty: 0:00.0-0:00.1 for a one-frame clip of 0.04 s."""
    if not needs_tenths(end, end - start):
        return f"{clock(start)}{dash}{clock(end)}"
    low, high = clock(start + 1e-6, tenths=True, rounding=math.floor), clock(end - 1e-6, tenths=True, rounding=math.ceil)
    return f"{low}{dash}{high}"


def _marked_pieces(text: TextMatch) -> list[tuple[str, bool]]:
    """The line cut into (piece, is a matched term) in order, covering all of it."""
    pieces, done = [], 0
    for begin, end in text.marks:
        pieces += [(text.line[done:begin], False), (text.line[begin:end], True)]
        done = end
    return [(piece, marked) for piece, marked in pieces + [(text.line[done:], False)] if piece]


def table(moments: list[Moment]) -> str:
    """Rank, score, start-end and file, one moment per line, best first; under a moment with a matching line, that
    line (matched terms as *word*) and its source."""
    if not moments:
        return "no matches"
    spans = [clock_span(m.start, m.end) for m in moments]
    width = max(13, *map(len, spans))
    lines = [f"{'#':>3}  {'score':>6}  {'start-end':>{width}}  file"]
    for rank, (m, span) in enumerate(zip(moments, spans), 1):
        lines.append(f"{rank:>3}  {m.score:6.3f}  {span:>{width}}  {m.path}")
        if m.text is not None:
            said = " ".join("".join(f"*{p}*" if marked else p for p, marked in _marked_pieces(m.text)).split())
            lines.append(f"{'':{width + 15}}\"{said}\" ({m.text.source})")
        if parts := getattr(m, "parts", None):
            lines.append(f"{'':{width + 15}}{_parts(parts)}")
    return "\n".join(lines)


def _parts(parts) -> str:
    """A sequence's parts in order: 1 0:10-0:18 (0.31) -> 2 0:20-0:30 (0.29)."""
    return " -> ".join(f"{i} {clock_span(p.start, p.end)} ({p.score:.2f})" for i, p in enumerate(parts, 1))


def as_json(query: str, moments: list[Moment], thumbnails: dict[str, str]) -> dict:
    """{"query": ..., "hits": [{"path", "start", "end", "score", "segments", "moment_id"[, "thumbnail"][, "visual_score"]
    [, "text_score"][, "text": {"line", "marks", "source", "language", "start", "end"}][, "parts": [{"start", "end",
    "score"}, ...] (a sequence query's parts, in order)]}]}"""
    hits = []
    for m in moments:
        hit = {"path": m.path, "start": round(m.start, 3), "end": round(m.end, 3), "score": round(m.score, 5),
               "segments": m.segments, "moment_id": m.moment_id}
        if m.moment_id in thumbnails:
            hit["thumbnail"] = thumbnails[m.moment_id]
        if m.visual_score is not None:
            hit["visual_score"] = round(m.visual_score, 5)
        if m.text_score is not None:
            hit["text_score"] = round(m.text_score, 5)
        if m.text is not None:
            hit["text"] = {"line": m.text.line, "marks": [list(mark) for mark in m.text.marks], "source": m.text.source,
                           "language": m.text.language, "start": round(m.text.start, 3), "end": round(m.text.end, 3)}
        if parts := getattr(m, "parts", None):
            hit["parts"] = [{"start": round(p.start, 3), "end": round(p.end, 3), "score": round(p.score, 5)} for p in parts]
        hits.append(hit)
    return {"query": query, "hits": hits}


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; background: #f4f5f7; color: #1d2330; }
h1 { font-size: 20px; margin: 0 0 4px; } .meta { color: #5b6475; margin: 0 0 20px; }
.card { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px #0002; padding: 14px; margin: 0 0 16px; }
.card header { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; margin-bottom: 10px; }
.rank { font-weight: 700; font-size: 18px; } .score { background: #1d6fd8; color: #fff; border-radius: 4px;
  padding: 1px 6px; font-variant-numeric: tabular-nums; } .when { font-variant-numeric: tabular-nums; }
.file { font-weight: 600; word-break: break-all; } .path { color: #5b6475; font-size: 12px; word-break: break-all; }
.body { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; margin-bottom: 6px; }
.strip { display: flex; gap: 4px; overflow-x: auto; }
.strip figure { margin: 0; } .strip img { display: block; width: 120px; height: 120px; border-radius: 4px; }
.strip figcaption { font-size: 11px; color: #5b6475; text-align: center; }
video { width: 240px; height: 135px; background: #000; border-radius: 4px; }
.missing { color: #a33; } .parts { color: #5b6475; font-variant-numeric: tabular-nums; }
.said { margin: 0 0 4px; } .said mark { background: #ffe58a; padding: 0 1px; border-radius: 2px; }
.said .source { color: #5b6475; font-size: 12px; margin-left: 6px; }
"""


def html_report(query: str, moments: list[Moment], *, index: str, model: str, strip: int = 5, size: int = 160) -> str:
    """A standalone HTML page: one card per moment with a thumbnail strip (JPEG data URIs) and a video at its start."""
    cards = [_card(rank, m, strip=strip, size=size) for rank, m in enumerate(moments, 1)]
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(cards) if cards else '<p class="missing">no matches</p>'
    count = f"{len(moments)} moment{'s' if len(moments) != 1 else ''}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vidsearch: {html.escape(query)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>{html.escape(query)}</h1>
<p class="meta">{count} · index {html.escape(index)} · model {html.escape(model)} · {made}</p>
{body}
</body></html>
"""


def _parts_html(moment: Moment) -> str:
    parts = getattr(moment, "parts", None)
    return f'<span class="parts">{html.escape(_parts(parts))}</span>' if parts else ""


def _card(rank: int, moment: Moment, *, strip: int, size: int) -> str:
    from .thumbnails import jpeg, strip_frames  # PyAV: only when a report is written

    tenths = needs_tenths(moment.end, (moment.end - moment.start) / strip)
    try:
        frames = strip_frames(moment.path, moment.start, moment.end, count=strip, size=size)
        figures = "".join(
            f'<figure><img src="data:image/jpeg;base64,{base64.b64encode(jpeg(rgb)).decode()}" alt="frame at '
            f'{clock(t, tenths=tenths)}"><figcaption>{clock(t, tenths=tenths)}</figcaption></figure>' for t, rgb in frames)
    except BadVideo as e:
        figures = f'<p class="missing">no preview: {html.escape(e.reason)}</p>'
    url = Path(moment.path).as_uri() + f"#t={moment.start:.2f},{moment.end:.2f}"
    said = ""
    if moment.text is not None:
        line = "".join(f"<mark>{html.escape(p)}</mark>" if marked else html.escape(p) for p, marked in _marked_pieces(moment.text))
        said = f'\n<p class="said">“{line}”<span class="source">{html.escape(moment.text.source)}</span></p>'
    return f"""<article class="card" id="hit-{rank}" data-moment-id="{moment.moment_id}">
<header><span class="rank">#{rank}</span><span class="score">{moment.score:.3f}</span>
<span class="when">{clock_span(moment.start, moment.end, "–")}</span>{_parts_html(moment)}
<span class="file">{html.escape(Path(moment.path).name)}</span></header>
<div class="body"><div class="strip">{figures}</div>
<video controls preload="metadata" src="{html.escape(url)}"></video></div>{said}
<p class="path">{html.escape(moment.path)}</p>
</article>"""
