"""Metric charts as inline SVG, drawn on the server: no script, no CDN, no network fetch.

Every text that came from a registry (metric names, stage names) is escaped here;
colours are presentation attributes, which the page's Content-Security-Policy allows
(inline ``style`` attributes it does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 520, 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 72, 16, 28
_STAGE_COLOURS = {"production": "#c0392b", "staging": "#d68910", "archived": "#7f8c8d"}
_OTHER_STAGE = "#8e44ad"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def metric_chart(
    metric: str,
    points: Sequence[tuple[int, float]],
    holders: Mapping[int, Sequence[str]],
) -> str:
    """One metric across versions (x: version number), stage holders marked and labelled."""
    title = escape(metric)
    if not points:
        return ""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if y_high == y_low:
        y_low, y_high = y_low - 1, y_high + 1
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x_of(x: float) -> float:
        return _LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def y_of(y: float) -> float:
        return _TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_h

    parts = [
        f'<svg class="chart" role="img" aria-label="{title} across versions" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{title} across versions</title>",
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - _RIGHT}" y2="{_TOP + plot_h}" '
        'stroke="#999" stroke-width="1"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}" stroke="#999" '
        'stroke-width="1"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" font-size="11" '
        f'fill="#444">{_fmt(y_high)}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end" font-size="11" '
        f'fill="#444">{_fmt(y_low)}</text>',
        f'<text x="{_LEFT}" y="{HEIGHT - 8}" font-size="11" fill="#444">v{x_low}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="11" '
        f'fill="#444">v{x_high}</text>',
    ]
    line = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2e86c1" stroke-width="1.5"/>')
    for x, y in points:
        stages = holders.get(x, ())
        label = f"v{x}: {title} = {_fmt(y)}"
        if stages:
            label += " (" + ", ".join(escape(s) for s in stages) + ")"
        colour = _STAGE_COLOURS.get(stages[0], _OTHER_STAGE) if stages else "#2e86c1"
        radius = 5 if stages else 2.5
        parts.append(
            f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="{radius}" fill="{colour}">'
            f"<title>{label}</title></circle>"
        )
        for offset, stage in enumerate(stages):
            parts.append(
                f'<text x="{x_of(x) + 7:.1f}" y="{y_of(y) - 6 - 12 * offset:.1f}" font-size="11" '
                f'fill="{_STAGE_COLOURS.get(stage, _OTHER_STAGE)}">{escape(stage)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
