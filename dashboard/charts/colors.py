"""One fixed colour, marker and line dash per route, used by every chart of the dashboard.

The colours are the Okabe–Ito palette, which stays distinguishable under the common forms of colour
blindness; each route also has its own marker symbol and line dash so colour is never the only cue
(and charts still read in greyscale print). `ALL` (every route together) is black with a thicker line.
"""

from __future__ import annotations

from dashboard.data import spec

# Okabe & Ito (2008), "Color Universal Design". Ordered so the two routes most clinics offer (IV, IN)
# get the most distinct pair (blue / orange).
ROUTE_COLORS: dict[str, str] = {
    "IV": "#0072B2",  # blue
    "IM": "#D55E00",  # vermillion
    "SC": "#009E73",  # bluish green
    "IN": "#E69F00",  # orange
    "SL": "#CC79A7",  # reddish purple
    "PO": "#56B4E9",  # sky blue
    spec.ALL: "#000000",
}
ROUTE_SYMBOLS: dict[str, str] = {
    "IV": "circle",
    "IM": "square",
    "SC": "diamond",
    "IN": "triangle-up",
    "SL": "cross",
    "PO": "x",
    spec.ALL: "star",
}
ROUTE_DASHES: dict[str, str] = {
    "IV": "solid",
    "IM": "dash",
    "SC": "dot",
    "IN": "dashdot",
    "SL": "longdash",
    "PO": "longdashdot",
    spec.ALL: "solid",
}
# Bar fill patterns: a second cue on bar charts, where markers and dashes do not apply.
ROUTE_PATTERNS: dict[str, str] = {
    "IV": "",
    "IM": "/",
    "SC": "\\",
    "IN": "x",
    "SL": ".",
    "PO": "+",
    spec.ALL: "",
}

# Sequential scale for rates (heatmaps): cividis is designed for colour-vision deficiency.
RATE_COLORSCALE = "Cividis"
# Severity mix: light to dark of one hue, so order reads without colour discrimination.
SEVERITY_COLORS: dict[str, str] = {"mild": "#C6DBEF", "moderate": "#6BAED6", "severe": "#08306B"}
NEUTRAL = "#444444"
HIDDEN = "#D9D9D9"  # cells withheld by disclosure control


def route_color(route: str) -> str:
    return ROUTE_COLORS.get(route, NEUTRAL)


def route_symbol(route: str) -> str:
    return ROUTE_SYMBOLS.get(route, "circle")


def route_dash(route: str) -> str:
    return ROUTE_DASHES.get(route, "solid")


def route_pattern(route: str) -> str:
    return ROUTE_PATTERNS.get(route, "")


def route_line_width(route: str) -> float:
    return 3.0 if route == spec.ALL else 2.0


def route_label(route: str) -> str:
    """'IV infusion', 'Sublingual': plain words on screen (the code stays in URLs and files); 'All routes'
    for ALL."""
    if route == spec.ALL:
        return "All routes"
    return spec.ROUTE_LABELS.get(route) or str(route)


def route_pair_label(route_a: object, route_b: object) -> str:
    """'IV infusion vs IM injection': a pair of routes compared (log-rank tests, differences), in the same words
    on the pages, the charts and the PDF report."""
    return f"{route_label(str(route_a))} vs {route_label(str(route_b))}"


def route_fill(route: str, alpha: float = 0.15) -> str:
    """The route's colour as a translucent rgba() for interval bands."""
    h = route_color(route).lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
