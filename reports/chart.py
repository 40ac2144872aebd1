"""The report's chart as a PNG: collections per day (bars) and attempt success per day (line), drawn with
matplotlib's Agg canvas (headless: no display, no pyplot global state, safe in worker processes)."""

import datetime as dt
import io
import math

from reports import selectors
from reports.periods import Period

BAR_COLOUR = "#7c3aed"
CONTEXT_BAR_COLOUR = "#c4b5fd"  # days before the report's own period
CONTEXT_DAYS = 14  # a short period is drawn with the days before it, so a day is seen against its fortnight
LINE_COLOUR = "#10b981"
TEXT_COLOUR = "#374151"
GRID_COLOUR = "#e5e7eb"
MAX_LABELS = 12


def chart_days(summary: selectors.Summary) -> tuple[list[selectors.Day], str]:
    """The days the chart shows, and its title: the period's own, or the fortnight a short one ends."""
    period = summary.period
    if period.days >= CONTEXT_DAYS:
        return summary.daily, f"Collections and attempt success per day, {period.label}"
    fortnight = Period(period.last - dt.timedelta(days=CONTEXT_DAYS - 1), period.last)
    title = f"Collections and attempt success per day, the {CONTEXT_DAYS} days to {period.last:%-d %b %Y}"
    return selectors.daily_series(fortnight), title


def daily_chart_png(summary: selectors.Summary, *, width_px: int = 800, height_px: int = 320) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    period = summary.period
    days, title = chart_days(summary)
    own = set(period.dates())
    colours = [BAR_COLOUR if day.date in own else CONTEXT_BAR_COLOUR for day in days]
    labels = [f"{day.date:%d %b}" for day in days]
    positions = list(range(len(days)))
    collected = [float(day.collected) for day in days]  # a picture, not a sum: floats are fine
    success = [None if d.attempt_success is None else d.attempt_success * 100 for d in days]

    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(positions, collected, color=colours, width=0.7, label="Collected (KES)", zorder=2)
    axes.set_ylabel("Collected (KES)", color=TEXT_COLOUR)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    axes.grid(axis="y", color=GRID_COLOUR, zorder=0)
    axes.set_ylim(bottom=0, top=max([*collected, 1]) * 1.1)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)

    rates = axes.twinx()
    points = [(x, y) for x, y in zip(positions, success, strict=True) if y is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        rates.plot(xs, ys, color=LINE_COLOUR, marker="o", markersize=3, linewidth=2, label="Attempt success")
    rates.set_ylim(0, 100)
    rates.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    rates.set_ylabel("Attempt success", color=TEXT_COLOUR)
    rates.spines["top"].set_visible(False)

    step = max(1, math.ceil(len(positions) / MAX_LABELS))
    axes.set_xticks(positions[::step], labels[::step])
    axes.tick_params(colors=TEXT_COLOUR, labelsize=8)
    rates.tick_params(colors=TEXT_COLOUR, labelsize=8)
    handles = axes.get_legend_handles_labels()[0] + rates.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, ncols=2)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
