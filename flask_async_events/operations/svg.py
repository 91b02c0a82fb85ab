"""Charts drawn on the server as inline SVG: no chart library and no JavaScript in the browser. Each
bar has a native tooltip (``<title>``) and its numbers as ``data-`` attributes; each chart says what
it shows in ``aria-label`` for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

from flask_async_events.operations.charts import HourPoint

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 24
SUCCEEDED, FAILED, P50, P95, GRID, TEXT = "#2f9e57", "#d9473b", "#1f5fbf", "#9b59b6", "#e3e6ea", "#66707a"


def _label(hour: datetime, daily: bool) -> str:
    return hour.strftime("%a %d") if daily else hour.strftime("%H:%M")


def _ticks(points: Sequence[HourPoint]) -> list[tuple[int, str]]:
    """Where the time axis is labelled: every 6 hours over a day, every midnight over a week."""
    daily = len(points) > 48
    return [
        (index, _label(point.hour, daily))
        for index, point in enumerate(points)
        if (point.hour.hour == 0 if daily else point.hour.hour % 6 == 0)
    ]


def _frame(label: str, top_value: str, points: Sequence[HourPoint], body: list[str]) -> Markup:
    plot_width = WIDTH - LEFT - RIGHT
    step = plot_width / max(len(points), 1)
    base = HEIGHT - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img"'
        f' class="chart" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" stroke="{GRID}"/>',
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="{TEXT}"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" font-size="10" fill="{TEXT}">{escape(top_value)}</text>',
        f'<text x="{LEFT - 4}" y="{base}" text-anchor="end" font-size="10" fill="{TEXT}">0</text>',
    ]
    for index, text in _ticks(points):
        x = LEFT + index * step
        parts.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="{TEXT}"/>')
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" font-size="10" fill="{TEXT}">{escape(text)}</text>')
    return Markup("".join([*parts, *body, "</svg>"]))


def attempts_chart(points: Sequence[HourPoint], title: str) -> Markup:
    """Stacked bars per hour: succeeded below, failed above."""
    peak = max((point.attempts for point in points), default=0) or 1
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    scale = (HEIGHT - BOTTOM - TOP) / peak
    base = HEIGHT - BOTTOM
    bars = []
    for index, point in enumerate(points):
        x = LEFT + index * step + step * 0.1
        width = step * 0.8
        ok_height, failed_height = point.succeeded * scale, point.failed * scale
        tip = f"{point.hour:%Y-%m-%d %H:00} UTC: {point.succeeded} succeeded, {point.failed} failed"
        bars.append(
            f'<g class="hour" data-hour="{point.hour.isoformat()}" data-succeeded="{point.succeeded}"'
            f' data-failed="{point.failed}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.1f}" y="{base - ok_height:.1f}" width="{width:.1f}" height="{ok_height:.1f}"'
            f' fill="{SUCCEEDED}"/>'
            f'<rect x="{x:.1f}" y="{base - ok_height - failed_height:.1f}" width="{width:.1f}"'
            f' height="{failed_height:.1f}" fill="{FAILED}"/></g>'
        )
    total_ok = sum(point.succeeded for point in points)
    total_failed = sum(point.failed for point in points)
    label = f"{title}: {total_ok} succeeded and {total_failed} failed attempts, per hour"
    return _frame(label, f"{peak}", points, bars)


def latency_chart(points: Sequence[HourPoint], title: str) -> Markup:
    """p50 and p95 latency per hour, as two lines (broken where an hour had no timed attempt)."""
    peak = max((point.p95_ms or 0 for point in points), default=0) or 1.0
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    scale = (HEIGHT - BOTTOM - TOP) / peak
    base = HEIGHT - BOTTOM
    lines = []
    for name, colour, values in (
        ("p50", P50, [point.p50_ms for point in points]),
        ("p95", P95, [point.p95_ms for point in points]),
    ):
        run: list[str] = []
        for index, value in [*enumerate(values), (len(values), None)]:
            if value is not None:
                run.append(f"{LEFT + (index + 0.5) * step:.1f},{base - value * scale:.1f}")
                continue
            if run:
                lines.append(
                    f'<polyline class="{name}" points="{" ".join(run)}" fill="none" stroke="{colour}"'
                    ' stroke-width="1.5"/>'
                )
                if len(run) == 1:
                    x, y = run[0].split(",")
                    lines.append(f'<circle class="{name}" cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
            run = []
    legend_y = TOP + 10
    lines.append(f'<text x="{WIDTH - RIGHT - 90}" y="{legend_y}" font-size="10" fill="{P50}">p50</text>')
    lines.append(f'<text x="{WIDTH - RIGHT - 60}" y="{legend_y}" font-size="10" fill="{P95}">p95</text>')
    return _frame(f"{title}: p50 and p95 latency per hour, in ms", f"{peak:.0f} ms", points, lines)
