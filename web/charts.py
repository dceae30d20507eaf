"""Small server-rendered SVG charts (no JavaScript, no external library)."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2f5fd0", "#c0392b", "#1e8449", "#c77c02", "#6c2bb4", "#16a085", "#7f8c8d")


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float, ...]


def bars(data: dict[str, float], *, width: int = 420, bar_height: int = 22, unit: str = "") -> Markup:
    """Horizontal bars, one per key, labelled with the value."""
    label_w, gap = 130, 6
    top = max(data.values(), default=0) or 1
    height = max(1, len(data)) * (bar_height + gap)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img">']
    for i, (name, value) in enumerate(data.items()):
        y = i * (bar_height + gap)
        w = (width - label_w - 60) * (value / top)
        parts.append(
            f'<text x="0" y="{y + bar_height * 0.7:.1f}">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{label_w + w + 5:.1f}" y="{y + bar_height * 0.7:.1f}">{escape(_num(value))}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_columns(labels: list[str], series: list[Series], *, width: int = 720, height: int = 240) -> Markup:
    """One column per label, stacked by series, with a legend."""
    left, bottom, legend_h = 34, 36, 18
    plot_h = height - bottom - legend_h
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    step = (width - left) / max(1, len(labels))
    col_w = step * 0.7
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img">']
    for frac in (0, 0.5, 1):
        y = legend_h + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dfe3ea"/>'
                     f'<text x="0" y="{y + 4:.1f}">{escape(_num(top * frac))}</text>')
    for i, label in enumerate(labels):
        x = left + i * step + (step - col_w) / 2
        y = legend_h + plot_h
        for k, s in enumerate(series):
            h = plot_h * s.values[i] / top
            y -= h
            if h > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{col_w:.1f}" height="{h:.1f}" '
                             f'fill="{PALETTE[k % len(PALETTE)]}">'
                             f'<title>{escape(s.name)}: {escape(_num(s.values[i]))}</title></rect>')
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}">{escape(label)}</text>')
    for k, s in enumerate(series):
        parts.append(f'<rect x="{left + k * 130}" y="2" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                     f'<text x="{left + k * 130 + 14}" y="11">{escape(s.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
