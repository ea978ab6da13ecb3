"""Small SVG charts for the results/ files, written by hand (no plotting library in the build stage).

One function, ``svg_chart``: points or joined series on a linear or log axis
each way, optional dashed reference lines, shaded regions (a target box) and
a legend. The compression
evaluation and the nearest-neighbour benchmark both draw with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str = ""
    colour: str | None = None  # None: the series' colour


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    colour: str = "steelblue"
    joined: bool = False  # draw a line through the points, in x order


@dataclass(frozen=True)
class Guide:
    """A dashed horizontal reference line, e.g. a baseline's score."""

    y: float
    label: str


@dataclass(frozen=True)
class Region:
    """A shaded rectangle, e.g. the box a target asks for; a None bound runs to the edge of the plot."""

    label: str
    x_min: float | None = None
    x_max: float | None = None
    y_min: float | None = None
    y_max: float | None = None
    colour: str = "#2ca02c"


@dataclass(frozen=True)
class Axis:
    title: str
    log: bool = False
    from_zero: bool = False  # linear axes only: start at 0 instead of the smallest value
    ticks: Sequence[float] = field(default=())  # empty: chosen from the data


def tick_text(value: float) -> str:
    """Short tick labels: 0.032, 1.5, 320, 10k, 1M."""
    if value == 0:
        return "0"
    rounded = float(f"{value:.2g}")
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(rounded) >= scale:
            return f"{rounded / scale:g}{suffix}"
    return f"{rounded:g}"


class _Scale:
    def __init__(self, values: Sequence[float], axis: Axis, lo_px: float, hi_px: float) -> None:
        self.axis, self.lo_px, self.hi_px = axis, lo_px, hi_px
        if axis.log:
            logs = [math.log10(v) for v in values if v > 0] or [0.0]
            # Half-decade bounds, so that ticks land on 1, 3.2, 10, ...
            self.lo, self.hi = math.floor(min(logs) * 2) / 2, math.ceil(max(logs) * 2) / 2
            if self.hi == self.lo:
                self.lo, self.hi = self.lo - 0.5, self.hi + 0.5
        else:
            top = max(values) if values else 1.0
            bottom = 0.0 if axis.from_zero else min(values)
            span = (top - bottom) or abs(top) or 1.0
            self.lo, self.hi = bottom if axis.from_zero else bottom - 0.05 * span, top + 0.15 * span

    def __call__(self, value: float) -> float:
        v = math.log10(max(value, 1e-300)) if self.axis.log else value
        return self.lo_px + (v - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px)

    def ticks(self) -> list[float]:
        if self.axis.ticks:
            return list(self.axis.ticks)
        if self.axis.log:
            steps = round((self.hi - self.lo) / 0.5)
            step = 0.5 if steps <= 12 else 1.0
            return [10 ** (self.lo + i * step) for i in range(int((self.hi - self.lo) / step) + 1)]
        return [self.lo + i * (self.hi - self.lo) / 4 for i in range(5)]


def svg_chart(series: Sequence[Series], *, x: Axis, y: Axis, guides: Sequence[Guide] = (), legend: bool = False,
              regions: Sequence[Region] = (), width: int = 720, height: int = 440) -> str:
    """An SVG document: each series' points as circles (labelled when a point has a label); regions are drawn
    first, under everything, and their finite bounds are kept in view."""
    left, right, top, bottom = 70, 40, 30, 50
    xs = [p.x for s in series for p in s.points] + [v for r in regions for v in (r.x_min, r.x_max) if v is not None]
    ys = ([p.y for s in series for p in s.points] + [g.y for g in guides]
          + [v for r in regions for v in (r.y_min, r.y_max) if v is not None])
    sx = _Scale(xs, x, left, width - right)
    sy = _Scale(ys, y, height - bottom, top)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>']
    for region in regions:
        x0 = left if region.x_min is None else min(max(sx(region.x_min), left), width - right)
        x1 = width - right if region.x_max is None else min(max(sx(region.x_max), left), width - right)
        y0 = top if region.y_max is None else min(max(sy(region.y_max), top), height - bottom)
        y1 = height - bottom if region.y_min is None else min(max(sy(region.y_min), top), height - bottom)
        parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0, 0):.1f}" height="{max(y1 - y0, 0):.1f}" '
                     f'fill="{region.colour}" fill-opacity="0.12" stroke="{region.colour}" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x0 + 4:.1f}" y="{y0 + 13:.1f}" fill="{region.colour}">{escape(region.label)}</text>')
    for value in sx.ticks():
        parts.append(f'<text x="{sx(value):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{tick_text(value)}</text>')
    for value in sy.ticks():
        parts.append(f'<text x="{left - 6}" y="{sy(value) + 4:.1f}" text-anchor="end">{tick_text(value)}</text>')
    parts.append(f'<text x="{(width + left) / 2}" y="{height - 12}" text-anchor="middle">{escape(x.title)}</text>')
    parts.append(f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle">'
                 f'{escape(y.title)}</text>')
    for guide in guides:
        parts.append(f'<line x1="{left}" y1="{sy(guide.y):.1f}" x2="{width - right}" y2="{sy(guide.y):.1f}" '
                     'stroke="gray" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{width - right}" y="{sy(guide.y) - 4:.1f}" text-anchor="end" fill="gray">'
                     f'{escape(guide.label)}</text>')
    placed: list[tuple[float, float, float, float]] = []
    for s in series:
        if s.joined and len(s.points) > 1:
            path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in sorted(s.points, key=lambda p: p.x))
            parts.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="1.5"/>')
        for p in s.points:
            parts.append(f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="4" fill="{p.colour or s.colour}"/>')
            if p.label:
                x_px, y_px = _free_spot(sx(p.x) + 6, sy(p.y) - 6, len(p.label), placed)
                parts.append(f'<text x="{x_px:.1f}" y="{y_px:.1f}">{escape(p.label)}</text>')
    if legend:
        for i, s in enumerate(series):
            y_px = top + 8 + 16 * i
            parts.append(f'<rect x="{left + 12}" y="{y_px - 8}" width="10" height="10" fill="{s.colour}"/>')
            parts.append(f'<text x="{left + 28}" y="{y_px + 1}">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _free_spot(x: float, y: float, chars: int, placed: list[tuple[float, float, float, float]],
               line: float = 12.0) -> tuple[float, float]:
    """Where a label of ``chars`` characters goes, from (x, y) down a line at a time, so that it covers no
    label placed before (points close together would otherwise print their names over each other)."""
    width = 6.2 * chars  # 11 px sans-serif: about 6 px a character

    def clashes(baseline: float) -> bool:
        return any(x < right and x + width > left and baseline - line < bottom and baseline > top
                   for left, top, right, bottom in placed)
    while clashes(y):
        y += line
    placed.append((x, y - line, x + width, y))
    return x, y
