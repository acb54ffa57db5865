"""Bar charts as inline SVG, drawn here so the exported pages need no script and no network: a
page mailed to an auditor or opened offline shows the same charts."""

from __future__ import annotations

from html import escape

PALETTE = ("#2d6cdf", "#38a169", "#dd6b20", "#c53030", "#805ad5", "#319795")


def bars(title: str, labels: list[str], series: dict[str, list[float]], unit: str = "",
         height: int = 220) -> str:  # fmt: skip
    """Grouped vertical bars: one group per label, one bar per series, with a legend."""
    count = max(len(labels), 1)
    width = max(360, int(len(title) * 7.5) + 80, min(1200, 80 + count * (18 * len(series) + 14)))
    plot_w = width - 76
    group_w = plot_w / count
    slanted = any(len(label) * 6.5 > group_w for label in labels)  # long labels: slanted
    top, bottom, left = 44, 96 if slanted else 40, 64
    height += bottom - 40
    plot_h = height - top - bottom
    peak = max((v for values in series.values() for v in values), default=0) or 1
    bar_w = max(2.0, (group_w - 8) / max(len(series), 1))
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             'xmlns="http://www.w3.org/2000/svg" font-size="11">',
             f'<text x="{left}" y="16" font-weight="600" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 12}" y2="{top + plot_h}" '
             'stroke="#8895a7"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{_short(peak)}{unit}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']  # fmt: skip
    for s, (name, values) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        for g, value in enumerate(values):
            h = plot_h * value / peak
            x = left + g * group_w + 4 + s * bar_w
            parts.append(f'<rect class="bar" data-series="{escape(name)}" x="{x:.1f}" '
                         f'y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{escape(labels[g])} · {escape(name)}: '
                         f'{value:,.2f}{unit}</title></rect>')  # fmt: skip
        x = left + 110 * s  # the legend: a row under the title
        parts.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="33">{escape(name)}</text>')  # fmt: skip
    step = max(1, count // 12)  # at most a dozen labels under the axis
    for g in range(0, len(labels), step):
        x, y = left + g * group_w + group_w / 2, top + plot_h + 16
        text = escape(labels[g][:18])
        if slanted:
            parts.append(f'<text x="{x:.1f}" y="{y}" text-anchor="end" '
                         f'transform="rotate(-35 {x:.1f} {y})">{text}</text>')  # fmt: skip
        else:
            parts.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(value: float) -> str:
    for size, suffix in ((1e8, "亿"), (1e4, "万")):
        if value >= size:
            return f"{value / size:,.1f}{suffix}"
    return f"{value:,.0f}"
