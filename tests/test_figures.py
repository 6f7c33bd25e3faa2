"""The Plotly builders (dashboard/charts/figures.py) and the route palette (dashboard/charts/colors.py), on hand-made
tables shaped as docs/core-api.md describes (hidden cells are NaN, as disclosure control leaves them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.charts import colors, figures
from dashboard.data import spec

NAN = float("nan")


# --- tables shaped like the core's -----------------------------------------------------------------------


def response_table() -> pd.DataFrame:
    return pd.DataFrame({
        "route": ["IV", "IN", "PO", "ALL"],
        "patients": [120, 80, NAN, 210],
        "evaluable": [100, 70, NAN, 178],
        "responders": [52, 28, NAN, 83],
        "response_rate": [0.52, 0.40, NAN, 83 / 178],
        "response_ci_low": [0.42, 0.29, NAN, 0.39],
        "response_ci_high": [0.62, 0.52, NAN, 0.54],
        "remitters": [30, 14, NAN, 46],
        "remission_rate": [0.30, 0.20, NAN, 46 / 178],
        "remission_ci_low": [0.22, 0.12, NAN, 0.20],
        "remission_ci_high": [0.40, 0.31, NAN, 0.33],
    })


def curve_table() -> pd.DataFrame:
    rows = []
    for route, n in (("IV", 30), ("IN", 40), ("ALL", 70)):
        at_risk = n
        relieved = 0.0
        for day in (0.17, 1, 3, 7, 10, 14, 21, 28):
            events = 3
            relieved = 1 - (1 - relieved) * (1 - events / at_risk)
            rows.append({"route": route, "day": day, "at_risk": at_risk, "events": events, "relieved": relieved,
                         "ci_low": max(relieved - 0.1, 0), "ci_high": min(relieved + 0.1, 1)})
            at_risk -= 4
    df = pd.DataFrame(rows)
    # disclosure control hides curve points resting on fewer than k patients at risk
    df.loc[df["at_risk"] < 11, ["at_risk", "relieved", "ci_low", "ci_high"]] = NAN
    return df


def side_effects_table() -> pd.DataFrame:
    rows = []
    for route, sessions, patients in (("IV", 600, 100), ("IN", 400, 70), ("ALL", 1000, 170)):
        for i, event in enumerate(spec.SUMMARY_EVENTS):
            k = (i * 7) % 50
            rows.append({"route": route, "event": event, "sessions": sessions, "sessions_with_event": k,
                         "session_rate": k / sessions, "patients": patients,
                         "patients_with_event": min(k, patients), "patient_rate": min(k, patients) / patients})
    df = pd.DataFrame(rows)
    small = (df["sessions_with_event"] > 0) & (df["sessions_with_event"] < 11)
    df.loc[small, ["sessions_with_event", "session_rate", "patients_with_event", "patient_rate"]] = NAN
    return df


def maintenance_table() -> pd.DataFrame:
    return pd.DataFrame({
        "route": ["IV", "IN", "ALL"],
        "responders": [52, 28, 80],
        "responders_in_maintenance": [30, 12, 42],
        "uptake_rate": [30 / 52, 12 / 28, 42 / 80],
        "uptake_ci_low": [0.44, 0.26, 0.42],
        "uptake_ci_high": [0.70, 0.61, 0.63],
        "maintenance_patients": [35, 14, 49],
        "maintenance_sessions": [210, 60, 270],
        "median_days_to_first_maintenance": [21.0, NAN, 24.0],
        "median_interval_days": [28.0, 30.0, 28.0],
        "sessions_per_patient_month": [1.1, 0.9, 1.05],
        "sustained_response_8w": [0.8, 0.7, 0.76],
        "sustained_ci_low": [0.65, 0.5, 0.64],
        "sustained_ci_high": [0.9, 0.85, 0.85],
    })


# --- helpers ----------------------------------------------------------------------------------------------


def assert_labelled(fig: go.Figure) -> None:
    """Title, axis titles on every visible axis, and hover text on every trace that draws data."""
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text, "figure has no title"
    layout = fig.to_plotly_json()["layout"]
    for name, axis in layout.items():
        if not (name.startswith("xaxis") or name.startswith("yaxis")):
            continue
        if axis.get("visible") is False or axis.get("type") == "category" and name.startswith("y"):
            continue
        if name.startswith("y") and axis.get("autorange") == "reversed":
            continue  # route / event labels are the axis
        if axis.get("matches") and axis.get("showticklabels") is False:
            continue  # a panel sharing its neighbour's labelled axis
        assert (axis.get("title") or {}).get("text"), f"{name} has no title in '{fig.layout.title.text}'"
    for trace in fig.data:
        if trace.hoverinfo == "skip":
            continue
        assert trace.hovertemplate, f"trace {trace.name!r} of '{fig.layout.title.text}' has no hover text"


def traces_for(fig: go.Figure, route: str) -> list:
    return [t for t in fig.data if t.legendgroup == route]


# --- the palette ----------------------------------------------------------------------------------------


def test_every_route_has_its_own_colour_marker_and_dash():
    routes = list(spec.ROUTES) + [spec.ALL]
    for table in (colors.ROUTE_COLORS, colors.ROUTE_SYMBOLS, colors.ROUTE_DASHES):
        assert set(table) == set(routes)
    assert len(set(colors.ROUTE_COLORS.values())) == len(routes)
    assert len(set(colors.ROUTE_SYMBOLS.values())) == len(routes)
    assert len({colors.ROUTE_DASHES[r] for r in spec.ROUTES}) == len(spec.ROUTES)
    assert len({colors.ROUTE_PATTERNS[r] for r in spec.ROUTES}) == len(spec.ROUTES)


def test_route_colours_are_the_okabe_ito_palette():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    assert set(colors.ROUTE_COLORS.values()) <= okabe_ito


def test_route_labels_and_translucent_fill():
    assert colors.route_label("IV") == "IV infusion"
    assert colors.route_label("ALL") == "All routes"
    # one wording of a compared pair for the pages, the forest plot and the PDF's log-rank table
    assert colors.route_pair_label("IV", "IM") == "IV infusion vs IM injection"
    assert colors.route_fill("IV", 0.2) == "rgba(0,114,178,0.2)"


# --- response ---------------------------------------------------------------------------------------------


def test_response_figure_draws_each_route_in_its_colour_with_its_interval():
    fig = figures.create_response_figure(response_table(), "GAD-7")
    assert_labelled(fig)
    iv = traces_for(fig, "IV")
    assert len(iv) == 2  # response and remission panels
    assert iv[0].marker.color == colors.ROUTE_COLORS["IV"]
    assert iv[0].marker.symbol == colors.ROUTE_SYMBOLS["IV"]
    assert iv[0].x[0] == pytest.approx(0.52)
    assert iv[0].error_x.arrayminus[0] == pytest.approx(0.10)
    assert iv[0].error_x.array[0] == pytest.approx(0.10)
    assert iv[1].x[0] == pytest.approx(0.30)
    assert "52 of 100 patients" in iv[0].hovertemplate
    # the legend shows each route once
    assert sum(1 for t in fig.data if t.showlegend is not False) == 4


def test_hidden_rates_are_labelled_hidden_on_the_chart():
    fig = figures.create_response_figure(response_table())
    po = traces_for(fig, "PO")
    assert po[0].mode == "text" and po[0].text == ("hidden",)
    assert figures.hidden_routes(response_table(), "response_rate") == ["PO"]


def test_comparison_figure_in_percentage_points():
    pairwise = pd.DataFrame({
        "route_a": ["IV", "IV", "IN"], "route_b": ["IN", "PO", "PO"], "n_a": [100, 100, 70], "n_b": [70, 20, 20],
        "rate_a": [0.52, 0.52, 0.40], "rate_b": [0.40, 0.3, 0.3], "difference": [0.12, NAN, 0.10],
        "ci_low": [-0.03, NAN, -0.12], "ci_high": [0.26, NAN, 0.3], "p_value": [0.12, NAN, 0.4],
        "p_adjusted": [0.24, NAN, 0.4],
    })
    fig = figures.create_comparison_figure(pairwise, "response")
    assert_labelled(fig)
    drawn = [t for t in fig.data if t.mode == "markers"]
    assert [t.y[0] for t in drawn] == ["IV infusion vs Intranasal", "Intranasal vs Oral"]
    assert drawn[0].x[0] == pytest.approx(12.0)
    assert drawn[0].error_x.arrayminus[0] == pytest.approx(15.0)
    assert "p (Benjamini–Hochberg adjusted): 0.24" in drawn[0].hovertemplate
    assert any(t.mode == "text" and t.text == ("hidden",) for t in fig.data)


def test_trajectory_figure_lines_and_bands_per_route():
    traj = pd.DataFrame({
        "route": ["IV"] * 3 + ["ALL"] * 3, "week": [0, 1, 2] * 2, "patients": [100, 90, 80, 200, 180, 160],
        "mean_score": [15, 11, 9, 15.5, 12, 10], "ci_low": [14, 10, 8, 15, 11, 9], "ci_high": [16, 12, 10, 16, 13, 11],
        "responders": [0, 20, 30, 0, 40, 60], "responder_share": [0, 0.2, 0.37, 0, 0.22, 0.37],
    })
    fig = figures.create_trajectory_figure(traj, "GAD-7")
    assert_labelled(fig)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.line.color for t in lines] == [colors.ROUTE_COLORS["IV"], colors.ROUTE_COLORS["ALL"]]
    assert [t.line.dash for t in lines] == [colors.ROUTE_DASHES["IV"], colors.ROUTE_DASHES["ALL"]]
    assert fig.layout.yaxis.title.text == "Mean GAD-7 score (points)"
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 2 and bands[0].fillcolor == colors.route_fill("IV", 0.12)
    assert list(bands[0].y) == [14, 10, 8]
    short = figures.create_trajectory_figure(traj, "GAD-7", max_week=1)
    assert list([t for t in short.data if t.mode == "lines+markers"][0].x) == [0, 1]


def test_breakdown_figure_groups_by_route_with_patterns():
    bd = pd.DataFrame({
        "group": ["S1", "S1", "S2", "S2"], "route": ["IV", "ALL", "IV", "ALL"], "evaluable": [50, 80, 40, 70],
        "responders": [25, 35, NAN, 30], "response_rate": [0.5, 35 / 80, NAN, 30 / 70],
        "response_ci_low": [0.36, 0.33, NAN, 0.32], "response_ci_high": [0.64, 0.55, NAN, 0.55],
    })
    fig = figures.create_breakdown_figure(bd, "site")
    assert_labelled(fig)
    iv = traces_for(fig, "IV")[0]
    assert list(iv.x) == ["S1", "S2"]
    assert iv.y[0] == pytest.approx(0.5) and iv.y[1] == 0
    assert list(iv.text) == ["", "hidden"]
    assert iv.marker.color == colors.ROUTE_COLORS["IV"]


# --- time to relief ---------------------------------------------------------------------------------------


def at_risk_table() -> pd.DataFrame:
    rows = []
    for route, counts in (("IV", [30, 18, NAN, 0]), ("IN", [40, 28, 16, 0]), ("ALL", [70, 46, 26, 0])):
        rows += [{"route": route, "day": day, "at_risk": n} for day, n in zip((0, 7, 14, 21), counts)]
    return pd.DataFrame(rows)


def test_a_route_without_a_shown_step_says_so_in_the_legend():
    curve = curve_table()
    curve.loc[curve["route"] == "IV", ["relieved", "ci_low", "ci_high"]] = NAN  # every IV step withheld
    # as protect() publishes it: the start (day 0, nobody relieved yet) is kept
    start = pd.DataFrame([{"route": "IV", "day": 0.0, "at_risk": NAN, "events": NAN, "relieved": 0.0, "ci_low": 0.0,
                           "ci_high": 0.0}])
    curve = pd.concat([start, curve], ignore_index=True)
    fig = figures.create_relief_figure(curve, at_risk_table(), "50 % improvement (response)")
    assert [t.name for t in fig.data if t.showlegend is not False and t.mode == "lines"] == [
        "IV infusion (no step shown)", "Intranasal", "All routes"]


def test_numbers_at_risk_read_the_weekly_table():
    risk = figures.numbers_at_risk(at_risk_table(), [0, 7, 14, 28])
    iv = list(risk[risk["route"] == "IV"]["at_risk"])
    assert iv[:2] == [30, 18]
    assert math.isnan(iv[2])  # withheld by disclosure control stays withheld
    assert iv[3] == 0  # past the table's end nobody is at risk


def test_relief_figure_step_curves_bands_and_risk_table():
    curve = curve_table()
    fig = figures.create_relief_figure(curve, at_risk_table(), "50 % improvement (response)")
    assert_labelled(fig)
    main = [t for t in fig.data if t.mode == "lines" and t.showlegend is not False]
    assert [t.name for t in main] == ["IV infusion", "Intranasal", "All routes"]
    assert all(t.line.shape == "hv" for t in main)
    assert main[0].x[0] == 0 and main[0].y[0] == 0  # curves start at day 0 with nobody relieved
    assert main[0].line.color == colors.ROUTE_COLORS["IV"]
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 3
    risk = [t for t in fig.data if t.mode == "text"]
    assert len(risk) == 3
    iv_risk = list(risk[0].text)
    assert iv_risk[:3] == ["30", "18", "–"]  # day 14: withheld by disclosure control
    # hidden steps are left out of the drawn curve, not drawn as gaps
    assert not any(math.isnan(y) for y in main[0].y)
    assert len(main[0].x) == 1 + curve[(curve["route"] == "IV")]["relieved"].notna().sum()
    assert fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.xaxis2.title.text == "Days since the first session"


# --- side effects -------------------------------------------------------------------------------------------


def test_heatmap_shows_percentages_and_marks_hidden_cells():
    se = side_effects_table()
    fig = figures.create_side_effect_heatmap(se)
    assert_labelled(fig)
    heat = fig.data[0]
    assert list(heat.y) == ["IV infusion", "Intranasal", "All routes"]
    assert len(heat.x) == len(spec.SUMMARY_EVENTS)
    z = np.array(heat.z, dtype=float)
    first = se[(se["route"] == "IV") & (se["event"] == spec.SUMMARY_EVENTS[2])]["session_rate"].iloc[0]
    assert z[0, 2] == pytest.approx(first * 100)
    texts = np.array(heat.text)
    assert "hidden" in texts[0]
    assert np.isnan(z[texts == "hidden"]).all()
    assert heat.zmin == 0 and heat.zmax == pytest.approx(np.nanmax(z))  # the scale runs from 0 to the top rate


def test_heatmap_scale_starts_at_zero_when_every_rate_is_zero():
    # Plotly would centre a flat scale on 0 (a colour bar from -0.5 % to 0.5 %)
    se = side_effects_table()
    se = se.assign(session_rate=se["session_rate"].where(se["session_rate"].isna(), 0.0))
    heat = figures.create_side_effect_heatmap(se).data[0]
    assert heat.zmin == 0 and heat.zmax > 0


def test_incidence_figure_with_intervals_and_event_choice():
    se = side_effects_table().assign(patient_ci_low=0.01, patient_ci_high=0.5)
    fig = figures.create_incidence_figure(se, ["nausea", "dissociation"])
    assert_labelled(fig)
    iv = traces_for(fig, "IV")[0]
    assert list(iv.y) == ["Nausea", "Dissociation"]
    assert iv.marker.color == colors.ROUTE_COLORS["IV"]
    assert fig.layout.scattermode == "group"


def test_severity_figure_leaves_out_partly_hidden_events_and_says_so():
    sev = pd.DataFrame(
        [("IV", "nausea", "mild", 30), ("IV", "nausea", "moderate", 15), ("IV", "nausea", "severe", 0),
         ("IV", "headache", "mild", 20), ("IV", "headache", "moderate", NAN), ("IV", "headache", "severe", 0)],
        columns=["route", "event", "severity", "sessions_with_event"],
    )
    fig, left_out = figures.create_severity_figure(sev, "IV")
    assert_labelled(fig)
    assert left_out == ["headache"]
    mild = fig.data[0]
    assert list(mild.y) == ["Nausea"]
    assert mild.x[0] == pytest.approx(30 / 45)
    assert [t.marker.color for t in fig.data] == [colors.SEVERITY_COLORS[s] for s in spec.SEVERITIES]


def test_fade_figure_by_session_number():
    rows = [("IV", "dissociation", n, 100, 60 - 5 * n) for n in range(1, 16)]
    df = pd.DataFrame(rows, columns=["route", "event", "session_number", "sessions", "sessions_with_event"])
    df["session_rate"] = df["sessions_with_event"] / df["sessions"]
    fig = figures.create_fade_figure(df, "dissociation", max_session=12)
    assert_labelled(fig)
    assert list(fig.data[0].x) == list(range(1, 13))
    assert fig.data[0].y[0] == pytest.approx(0.55)
    assert fig.data[0].line.color == colors.ROUTE_COLORS["IV"]


def test_blood_pressure_figure():
    bp = pd.DataFrame({"route": ["IV", "ALL"], "sessions_with_vitals": [500, 700], "sbp_peak_median": [148, 145],
                       "dbp_peak_median": [88, NAN], "sbp_rise_median": [12, 10], "dbp_rise_median": [6, 5],
                       "sessions_sbp_180": [20, 25], "sessions_dbp_110": [11, 14], "share_bp_severe": [0.05, 0.04]})
    fig = figures.create_blood_pressure_figure(bp)
    assert_labelled(fig)
    iv = traces_for(fig, "IV")
    assert iv[0].x[0] == 148 and iv[0].marker.color == colors.ROUTE_COLORS["IV"]
    assert iv[1].marker.color == "white" and iv[1].marker.line.color == colors.ROUTE_COLORS["IV"]
    assert "hidden" in traces_for(fig, "ALL")[1].hovertemplate
    gone = figures.create_blood_pressure_figure(bp.assign(sbp_peak_median=[148, NAN], dbp_peak_median=[88, NAN]))
    labels = [t for t in gone.data if t.type == "scatter" and t.mode == "text"]
    assert [(t.y[0], t.text[0], t.x[0]) for t in labels] == [("All routes", "hidden", 88.0)]
    # each panel's axis names its own measure: pressures in mmHg; the severe share out of sessions with vitals
    panels = [a.text for a in fig.layout.annotations]
    assert panels == ["Median peak pressure (filled: systolic, open: diastolic)", "Sessions at 180/110 mmHg or more"]
    assert fig.layout.xaxis.title.text == "Median peak pressure (mmHg)"
    assert fig.layout.xaxis2.title.text == "% of sessions with vitals"
    assert fig.layout.yaxis.title.text == "Route" and not fig.layout.yaxis2.title.text


# --- on a phone (issue 11) ---------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return str(text).split("<br>")


def test_on_a_phone_the_heatmap_turns_so_its_cells_hold_their_words():
    se = side_effects_table()
    wide = figures.create_side_effect_heatmap(se)
    before = wide.to_json()
    phone = figures.fit_for_phone(wide)
    assert wide.to_json() == before  # the shared figure is not changed
    w, p = wide.data[0], phone.data[0]
    assert list(p.x) == list(w.y) == ["IV infusion", "Intranasal", "All routes"]  # routes across
    # events down, a long name on two lines rather than a margin that narrows every cell
    assert [v.replace("<br>", " ") for v in p.y] == list(w.x)
    assert all(len(line) <= figures.PHONE_ROW_LABEL_CHARS for v in p.y for line in v.split("<br>"))
    assert "Severe BP (≥<br>180/110)" in p.y
    np.testing.assert_array_equal(np.array(p.z, dtype=float), np.array(w.z, dtype=float).T)
    # the cells' words in their short form, each from its own rate: turned with the rest
    assert [list(row) for row in p.text] == [[figures._phone_cell_text(v, t) for v, t in zip(zr, tr)]
                                             for zr, tr in zip(np.array(w.z, dtype=float).T, np.array(w.text).T)]
    assert p.text[0][0] == "0%" and p.text[1][0] == "hidden" and p.text[2][1] == "3.5%"
    np.testing.assert_array_equal(np.array(p.customdata), np.array(w.customdata).T)
    assert p.hovertemplate == "<b>%{x}</b><br>%{y}: %{customdata} of sessions<extra></extra>"
    assert phone.layout.xaxis.title.text == "Route of the session"
    assert phone.layout.yaxis.title.text is None  # the events' names say it; the cells get the width
    assert p.colorbar.orientation == "h"
    # the routes' names above the plot get their own room under the title, which stands at the top
    assert phone.layout.title.yref == "container" and phone.layout.title.y == 1
    assert phone.layout.margin.t >= figures.PHONE_TOP_AXIS_PX + 22 * len(_lines(phone.layout.title.text))
    assert all(len(line) <= figures.PHONE_LINE_CHARS for line in _lines(phone.layout.title.text))
    assert "".join(_lines(phone.layout.title.text)).replace(" ", "") == wide.layout.title.text.replace(" ", "")


@pytest.mark.parametrize(("percent", "text", "short"), [
    (44.6, "44.6 %", "45%"), (100.0, "100.0 %", "100%"), (9.96, "10.0 %", "10%"), (9.94, "9.9 %", "9.9%"),
    (0.4, "0.4 %", "0.4%"), (0.0, "0.0 %", "0%"), (NAN, "< 11 %", "<11%"), (NAN, "< 0.2 %", "<0.2%"),
    (NAN, "hidden", "hidden"),
])
def test_a_heatmap_cell_on_a_phone_says_its_value_in_short(percent, text, short):
    assert figures._phone_cell_text(percent, text) == short


def test_a_phone_layout_is_made_once_per_shared_figure():
    """ui.render_chart on a phone draws ui.phone_figure(fig): the same layout as fit_for_phone, made once per
    figure build_figure shares, and a figure's own layout, never another figure's."""
    from dashboard.app import ui

    se = side_effects_table()
    wide = figures.create_side_effect_heatmap(se)
    other = figures.create_side_effect_heatmap(se)
    phone = ui.phone_figure(wide)
    assert phone.to_json() == figures.fit_for_phone(wide).to_json()
    assert ui.phone_figure(wide) is phone
    assert ui.phone_figure(other) is not phone and ui.phone_figure(other).to_json() == phone.to_json()


def test_on_a_phone_hidden_labels_beside_dots_are_short():
    fig = go.Figure([go.Scatter(x=[0], y=["IV infusion"], mode="text", text=["hidden: fewer than 11"]),
                     go.Scatter(x=[0], y=["All routes"], mode="text", text=["hidden: < 65 %"]),
                     go.Scatter(x=[0.5], y=["Oral"], mode="markers")])
    phone = figures.fit_for_phone(fig)
    assert [t.text for t in phone.data] == [("hidden",), ("< 65 %",), None]
    assert fig.data[0].text == ("hidden: fewer than 11",)  # the shared figure keeps its words


def test_on_a_phone_hidden_labels_over_grouped_bars_stand_upright():
    # one site with five routes hidden: side by side, five "hidden" ran together on a 390-pixel screen
    routes = ["IV", "IM", "IN", "SL", "PO"]
    rows = [{"group": "S5", "route": r, "evaluable": None, "responders": None, "response_rate": None,
             "response_ci_low": None, "response_ci_high": None} for r in routes]
    rows += [{"group": "S1", "route": r, "evaluable": 80, "responders": 40, "response_rate": 0.5,
              "response_ci_low": 0.39, "response_ci_high": 0.61} for r in routes]
    wide = figures.create_breakdown_figure(pd.DataFrame(rows), "site")
    phone = figures.fit_for_phone(wide)
    assert [list(t.text) for t in phone.data] == [["hidden", ""]] * 5  # the words are the same
    assert [t.textangle for t in phone.data] == [-90] * 5
    assert [t.textangle for t in wide.data] == [None] * 5  # a laptop keeps them level; the shared figure unchanged


def test_on_a_phone_titles_wrap_and_the_legend_goes_below():
    bp = pd.DataFrame({"route": ["IV", "ALL"], "sessions_with_vitals": [500, 700], "sbp_peak_median": [148, 145],
                       "dbp_peak_median": [88, 80], "sbp_rise_median": [12, 10], "dbp_rise_median": [6, 5],
                       "sessions_sbp_180": [20, 25], "sessions_dbp_110": [11, 14], "share_bp_severe": [0.05, 0.04]})
    phone = figures.fit_for_phone(figures.create_blood_pressure_figure(bp))
    panels = [a.text for a in phone.layout.annotations]
    assert len(panels) == 2 and all(len(line) <= figures.PHONE_LINE_CHARS // 2 for t in panels for line in _lines(t))
    assert all(len(line) <= (figures.PHONE_LINE_CHARS - 10) // 2
               for ax in phone.select_xaxes() for line in _lines(ax.title.text))
    rows = [("IV", "dissociation", n, 100, 60 - 5 * n) for n in range(1, 16)] + \
           [("ALL", "dissociation", n, 150, 70 - 5 * n) for n in range(1, 16)]
    df = pd.DataFrame(rows, columns=["route", "event", "session_number", "sessions", "sessions_with_event"])
    df["session_rate"] = df["sessions_with_event"] / df["sessions"]
    fade = figures.create_fade_figure(df, "dissociation")
    phone = figures.fit_for_phone(fade)
    assert fade.layout.legend.orientation == "v"
    assert phone.layout.legend.orientation == "h" and phone.layout.legend.yref == "container"
    assert phone.layout.legend.y == 0 and phone.layout.margin.b >= 26 + 20
    assert [list(t.x) for t in phone.data] == [list(t.x) for t in fade.data]  # the data are the same


# --- maintenance ------------------------------------------------------------------------------------------


def test_maintenance_figures():
    m = maintenance_table()
    rates = figures.create_maintenance_rates_figure(m)
    assert_labelled(rates)
    iv = traces_for(rates, "IV")
    assert iv[0].x[0] == pytest.approx(30 / 52)
    assert iv[1].x[0] == pytest.approx(0.8)
    timing = figures.create_maintenance_timing_figure(m)
    assert_labelled(timing)
    in_first = traces_for(timing, "IN")[0]
    assert in_first.text == ("hidden",)
    proj = pd.DataFrame({"route": ["IV", "IN", "ALL"], "current_responders": [52, 28, 80],
                         "expected_in_maintenance": [30.0, 12.0, 42.0], "sessions_per_month": [33.0, NAN, 44.0]})
    fig = figures.create_projection_figure(proj)
    assert_labelled(fig)
    assert [t.name for t in fig.data] == ["IV infusion", "Intranasal"]  # ALL is not a bar beside them
    assert fig.data[1].text == ("hidden",)


def test_on_a_phone_the_upright_numbers_over_bars_have_room():
    """On a phone the numbers over the bars stand upright (side by side they ran into each other); Plotly's
    autorange left room for them lying flat, so "1,241" over the tallest bar was cut to "1"."""
    proj = pd.DataFrame({"route": ["IV", "IN", "PO", "ALL"], "current_responders": [663, 554, 160, 1377],
                         "expected_in_maintenance": [379.0, 401.0, 63.0, 843.0],
                         "sessions_per_month": [421.0, 1241.0, NAN, 1923.0]})
    fig = figures.create_projection_figure(proj)
    phone = figures.fit_for_phone(fig)
    assert [t.textangle for t in phone.data] == [-90, -90, -90]
    assert phone.layout.yaxis.range == (0, 1241.0 * figures.PHONE_UPRIGHT_TEXT_HEADROOM)
    assert fig.layout.yaxis.range is None  # the desktop figure is untouched
    # an axis whose range the figure sets keeps it
    fixed = go.Figure(fig).update_yaxes(range=[0, 5000])
    assert figures.fit_for_phone(fixed).layout.yaxis.range == (0, 5000)


def test_on_a_phone_the_numbers_beside_horizontal_bars_have_room():
    """On a phone the maintenance timing's "27" beside the longest bar was cut to "2" at the chart's right edge
    (its panel is half of about 230 pixels): each axis reaches far enough for its longest bar and its number."""
    m = maintenance_table()
    fig = figures.create_maintenance_timing_figure(m)
    phone = figures.fit_for_phone(fig)
    assert fig.layout.xaxis.range is None and fig.layout.xaxis2.range is None  # the desktop figure is untouched
    for axis, longest in ((phone.layout.xaxis, 24.0), (phone.layout.xaxis2, 30.0)):
        panel_px = figures.PHONE_PLOT_PX * (axis.domain[1] - axis.domain[0])
        text_px = figures.PHONE_TEXT_CHAR_PX * 2 + figures.PHONE_TEXT_PAD_PX  # "24", "30"
        assert axis.range[0] == 0
        # the bar ends where its number still fits before the panel's end, and no further from it
        assert axis.range[1] == pytest.approx(longest / (1 - text_px / panel_px))
        assert longest / axis.range[1] * panel_px + text_px == pytest.approx(panel_px)
    # a range the figure sets is widened only as far as the number needs (blood pressure's shares)
    shares = go.Figure(go.Bar(x=[0.01, 0.004], y=["IV infusion", "All routes"], orientation="h",
                              text=["1.0 %", "0.4 %"], textposition="outside")
                       ).update_xaxes(range=[0, 0.013], domain=[0.6, 1])  # the right-hand panel, as drawn
    widened = figures.fit_for_phone(shares).layout.xaxis.range
    panel_px = figures.PHONE_PLOT_PX * 0.4
    assert widened[0] == 0 and widened[1] == pytest.approx(
        0.01 / (1 - (figures.PHONE_TEXT_CHAR_PX * 5 + figures.PHONE_TEXT_PAD_PX) / panel_px))
    roomy = go.Figure(shares).update_xaxes(range=[0, 0.05])
    assert figures.fit_for_phone(roomy).layout.xaxis.range == (0, 0.05)


def test_on_a_phone_every_title_stands_under_plotly_s_toolbar():
    """On a touch screen Plotly's toolbar is always shown across the chart's top right; the title Plotly
    centred in the top margin ran under its icons, and a two-line title touched four-line panel titles. Every
    title stands at the top, padded under the toolbar, with its lines and the panels' titles in the margin."""
    one_line = figures.fit_for_phone(figures.create_maintenance_rates_figure(maintenance_table()))
    timing = figures.fit_for_phone(figures.create_maintenance_timing_figure(maintenance_table()))
    for phone in (one_line, timing):
        title = phone.layout.title
        assert (title.y, title.yref, title.yanchor, title.pad.t) == (1, "container", "top", figures.PHONE_TITLE_PAD_PX)
    panel_lines = max(len(_lines(a.text)) for a in timing.layout.annotations if a.y >= 1)
    assert panel_lines == 4
    assert timing.layout.margin.t == (figures.PHONE_TITLE_PAD_PX + figures.TITLE_LINE_PX * len(_lines(timing.layout.title.text))
                                      + 15 * panel_lines)


# --- overview and empty inputs ---------------------------------------------------------------------------------


def test_funnel_figure_uses_the_all_row():
    funnel = pd.DataFrame({"route": ["IV", "ALL"], "patients": [100, 220], "with_sessions": [100, 210],
                           "with_baseline": [95, 200], "eligible": [80, 170], "with_followup": [75, 150],
                           "with_endpoint": [NAN, 140]})
    fig = figures.create_funnel_figure(funnel)
    assert_labelled(fig)
    bar = fig.data[0]
    assert list(bar.x) == [220, 210, 200, 170, 150, 140]
    assert bar.text[0] == "220 (100%)" and bar.text[-1] == "140 (64%)"


@pytest.mark.parametrize("builder", [
    lambda df: figures.create_funnel_figure(df),
    lambda df: figures.create_response_figure(df),
    lambda df: figures.create_comparison_figure(df),
    lambda df: figures.create_trajectory_figure(df),
    lambda df: figures.create_breakdown_figure(df, "site"),
    lambda df: figures.create_relief_figure(df, df, "response"),
    lambda df: figures.create_side_effect_heatmap(df),
    lambda df: figures.create_incidence_figure(df),
    lambda df: figures.create_severity_figure(df, "IV")[0],
    lambda df: figures.create_fade_figure(df, "nausea"),
    lambda df: figures.create_blood_pressure_figure(df),
    lambda df: figures.create_maintenance_rates_figure(df),
    lambda df: figures.create_maintenance_timing_figure(df),
    lambda df: figures.create_projection_figure(df),
])
def test_empty_tables_give_a_figure_that_says_why(builder):
    fig = builder(pd.DataFrame())
    assert fig.layout.title.text
    assert fig.layout.annotations and fig.layout.annotations[0].text


def test_formatters():
    assert figures.fmt_pct(0.4567) == "45.7 %"
    assert figures.fmt_pct(NAN) == "hidden"
    assert figures.fmt_count(1234.0) == "1,234"
    assert figures.fmt_days(3.25) == "3.2 days"
    assert figures.fmt_days(14.0) == "14 days"
    assert figures.event_label(spec.BP_SEVERE) == "Severe BP (≥ 180/110)"


def test_trajectory_bands_only_for_all_routes_when_many_lines():
    weeks = [0, 1, 2]
    rows = [(r, w, 50, 10.0 - w, 9.0 - w, 11.0 - w) for r in ("IV", "IM", "IN", "ALL") for w in weeks]
    traj = pd.DataFrame(rows, columns=["route", "week", "patients", "mean_score", "ci_low", "ci_high"])
    fig = figures.create_trajectory_figure(traj, "PHQ-9")
    assert [t.legendgroup for t in fig.data if t.fill == "tonexty"] == ["ALL"]
    assert len([t for t in fig.data if t.mode == "lines+markers"]) == 4
    two = figures.create_trajectory_figure(traj[traj["route"].isin(["IV", "ALL"])], "PHQ-9")
    assert [t.legendgroup for t in two.data if t.fill == "tonexty"] == ["IV", "ALL"]


def test_relief_chart_ticks_stay_few_for_a_very_long_follow_up():
    # issue 10: without an at-risk table the chart made one tick per week up to the last day; with a last
    # published step at day 10,000 that is about 1,430 ticks. Now the step grows: 7 × ceil(10000 / 700) = 105.
    curve = curve_table()
    curve.loc[curve["day"] == 14, "day"] = 10_000.0
    empty = pd.DataFrame({"route": [], "day": [], "at_risk": []})
    fig = figures.create_relief_figure(curve[curve["day"] <= 10_000], empty, "response")
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks == list(range(0, 10_081, 105))  # 97 ticks through the first at or after day 10,000

# --- fair comparisons (issue 15) ------------------------------------------------------------------------------


def test_adjusted_figure_draws_crude_and_adjusted_dots_and_says_where_there_is_no_adjusted_rate():
    table = pd.DataFrame({
        "route": ["IV", "IN", "PO"], "evaluable": [200, 150, pd.NA], "crude_rate": [0.40, 0.55, NAN],
        "adjusted_rate": [0.48, 0.50, NAN], "adjusted_ci_low": [0.42, 0.43, NAN],
        "adjusted_ci_high": [0.54, 0.57, NAN], "difference": [NAN, 0.02, NAN], "difference_ci_low": [NAN, -0.07, NAN],
        "difference_ci_high": [NAN, 0.11, NAN], "reference_route": ["IV", "IV", None],
        "adjusted_for": ["baseline score", "baseline score", None], "note": ["reference route", "", "hidden"],
    })
    fig = figures.create_adjusted_figure(table)
    crude = [t for t in fig.data if t.name == "Crude rate"]
    adjusted = [t for t in fig.data if t.name == "Adjusted rate (95 % interval)"]
    assert [t.x[0] for t in crude] == [0.40, 0.55]
    assert [t.x[0] for t in adjusted] == [0.48, 0.50]
    assert adjusted[0].marker.color == colors.route_color("IV") and adjusted[1].marker.color == colors.route_color("IN")
    assert list(adjusted[0].error_x.array) == pytest.approx([0.06]) and list(adjusted[0].error_x.arrayminus) == pytest.approx([0.06])
    assert [t.text[0].strip() for t in fig.data if t.mode == "text"] == ["hidden"]
    assert "hidden" not in str(figures.create_adjusted_figure(table.iloc[:2]).data)
    assert figures.create_adjusted_figure(table.iloc[:0]).layout.annotations[0].text.startswith("No evaluable")


def test_benchmark_funnel_draws_sites_limits_and_network_lines():
    from dashboard.analysis import benchmark

    counts = pd.DataFrame({"site": ["S1", "S2", "S3"], "evaluable": [40, 90, 5], "responders": [20, 60, 2],
                           "remitters": [10, 30, 1]})
    table = benchmark.protect_benchmark(benchmark.benchmark_from_counts(counts), 0)
    fig = figures.create_benchmark_funnel_figure(table, "response")
    dots = [t for t in fig.data if t.mode == "markers+text"]
    assert [(t.text[0], t.x[0], t.y[0]) for t in dots] == [("S1", 40, 0.5), ("S2", 90, 60 / 90), ("S3", 5, 0.4)]
    limits = [t for t in fig.data if t.mode == "lines" and "limits" in t.name]
    assert {t.name for t in limits} == {"95 % limits", "99.8 % limits"} and len(limits) == 4
    pooled = 82 / 135
    upper95 = next(t for t in limits if t.name == "95 % limits" and t.y[-1] > pooled)
    n = upper95.x[-1]
    assert upper95.y[-1] == pytest.approx(pooled + 1.959964 * (pooled * (1 - pooled) / n) ** 0.5)
    # the network's lines are named in the legend (labels on the plot ran into each other)
    lines = {t.name: list(t.y) for t in fig.data if t.mode == "lines" and "limits" not in t.name}
    assert lines == {"Network, all patients pooled: 60.7 %": [pytest.approx(pooled)] * 2}
    assert not fig.layout.annotations
    # fewer than 5 benchmarked sites: no median or 75th percentile line; the axis fits the sites and limits
    assert list(fig.layout.yaxis.range) == [0.0, 1.0]  # a site of 5: its 99.8 % limits span everything
    two = benchmark.protect_benchmark(benchmark.benchmark_from_counts(counts.iloc[:2]), 0)
    p2 = 80 / 130
    half = 3.090232 * (p2 * (1 - p2) / 40) ** 0.5  # the limits at the smallest site, 40 patients
    lo, hi = min(0.5, p2 - half), max(60 / 90, p2 + half)
    pad = max(0.05, (hi - lo) / 10)
    assert list(figures.create_benchmark_funnel_figure(two, "response").layout.yaxis.range) == [
        pytest.approx(lo - pad), pytest.approx(hi + pad)]
    with_lines = figures.create_benchmark_funnel_figure(table, "response", median=0.5, p75=0.6)
    assert {t.name for t in with_lines.data if t.mode == "lines" and "limits" not in t.name} == {
        "Network, all patients pooled: 60.7 %", "Median site: 50.0 %", "75th percentile of sites: 60.0 %"}
    # a restricted table (one site) still gets the network lines passed by the page
    mine = benchmark.restrict_benchmark(table, frozenset({"S1"}))
    fig1 = figures.create_benchmark_funnel_figure(mine, "response", pooled=pooled, median=0.5, p75=0.6)
    assert [t.text[0] for t in fig1.data if t.mode == "markers+text"] == ["S1"]
    texts = " ".join(str(x) for t in fig1.data for x in (t.name, t.text, t.hovertemplate)) + " ".join(
        str(a.text) for a in fig1.layout.annotations)
    assert "S2" not in texts and "S3" not in texts
    # hidden sites are named as hidden, not drawn
    hidden = benchmark.protect_benchmark(benchmark.benchmark_from_counts(counts), 11)
    fig_h = figures.create_benchmark_funnel_figure(hidden, "response")
    assert "S3" not in [t.text[0] for t in fig_h.data if t.mode == "markers+text"]
    assert any("hidden" in a.text and "S3" in a.text for a in fig_h.layout.annotations)


def test_column_text_is_cell_text_of_every_row():
    """render_table formats a column at once (figures.column_text); each cell must read as cell_text reads it:
    hidden for each reason, undefined, and shown, in a protected table whose rows were filtered (labels not
    0..n-1) and in a table without the hidden-cell record."""
    from dashboard.analysis import disclosure

    raw = pd.DataFrame({
        "route": ["IV", "IM", "IN", "SL", "ALL"],
        "patients": [40, 12, 5, 30, 87], "evaluable": [38, 12, 5, 0, 55],
        "responders": [20, 3, 2, 0, 25], "remitters": [10, 1, 1, 0, 12],
    })
    for count, rate in (("responders", "response"), ("remitters", "remission")):
        raw[f"{rate}_rate"] = [c / n if n else float("nan") for c, n in zip(raw[count], raw["evaluable"])]
        raw[f"{rate}_ci_low"] = raw[f"{rate}_rate"] * 0.8
        raw[f"{rate}_ci_high"] = raw[f"{rate}_rate"] * 1.2
    protected = disclosure.protect("response_by_route", raw, 11)
    assert disclosure.WHY_HIDDEN in protected.attrs
    for table in (protected, protected[protected["route"] != "IM"], raw.drop(index=[1])):
        for column in ("patients", "responders", "response_rate", "remission_ci_high"):
            for kind in ("count", "pct", "pct0", "days", "decimal1"):
                want = [figures.cell_text(table, i, column, kind, undefined="none") for i in table.index]
                assert figures.column_text(table, column, kind, undefined="none") == want
    texts = figures.column_text(protected, "responders")
    assert texts[2] == "fewer than 11" and "none" not in figures.column_text(protected, "response_rate", "pct")


def test_plain_gives_nullable_numbers_as_floats_and_keeps_the_rest():
    """figures.plain builds the frame at once: the same as converting each nullable column with astype."""
    df = pd.DataFrame({
        "route": pd.Series(["IV", "IN", None], dtype=object),
        "site": pd.Series(["S1", "S2", "S3"], dtype="string"),
        "patients": pd.array([12, None, 3], dtype="Int64"),
        "rate": pd.array([0.5, None, 0.25], dtype="Float64"),
        "day": [1.5, NAN, 3.0],
        "flag": [True, False, True],
    }).set_axis([4, 7, 9])
    df.attrs["why_hidden"] = {"patients": {7: ("fewer_than", 11)}}
    expected = df.astype({"patients": "float64", "rate": "float64"})
    out = figures.plain(df)
    pd.testing.assert_frame_equal(out, expected, check_exact=True)
    assert out.attrs == df.attrs and out.attrs is not df.attrs
    out.loc[4, "route"] = "SC"
    out.attrs["why_hidden"]["patients"][9] = ("hidden", 0)
    assert df.loc[4, "route"] == "IV" and 9 not in df.attrs["why_hidden"]["patients"]  # the input is not changed
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"]).astype("Int64")
    assert list(figures.plain(dup).dtypes) == ["float64", "float64"]


def test_a_builders_own_title_and_legend_settings_survive_the_common_layout():
    """Merged, not replaced: a builder that set part of the legend or the title before `_Draft.figure` keeps
    it, exactly as with Plotly's update_layout."""
    props = figures._base_layout_properties("T", height=500, legend=False)
    expected = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    draft = figures._Draft()
    draft.add_trace(figures._trace("scatter", x=[1, 2], y=[3, 4]))
    for fig in (expected, draft):
        fig.update_layout(legend=dict(traceorder="reversed"), title=dict(font=dict(color="red")), height=300)
    expected.update_layout(**props)
    got = draft.figure("T", height=500, legend=False)
    assert got.to_plotly_json() == expected.to_plotly_json()
    assert got.layout.legend.traceorder == "reversed" and got.layout.title.font.color == "red"
    assert got.layout.title.font.size == 17 and got.layout.height == 500


def test_a_long_title_wraps_instead_of_running_past_the_chart():
    """The relief threshold in words made a 155-character title, cut mid-word at the chart's edge."""
    label = ("a drop of GAD-7 4, PHQ-9 5 or PCL-5 10+ points on each patient's own questionnaire "
             "(matched to diagnosis)")
    long = figures.create_relief_figure(curve_table(), at_risk_table(), label)
    short = figures.create_relief_figure(curve_table(), at_risk_table(), "50 % improvement (response)")
    lines = long.layout.title.text.split("<br>")
    assert len(lines) == 2 and all(len(line) <= figures.TITLE_LINE_CHARS for line in lines)
    assert " ".join(lines) == f"Share of patients relieved over time — threshold: {label}"
    assert "<br>" not in short.layout.title.text
    # the further line gets its own room: the plot keeps its height
    assert long.layout.margin.t == short.layout.margin.t + figures.TITLE_LINE_PX
    assert long.layout.height == short.layout.height + figures.TITLE_LINE_PX


def test_on_a_phone_a_long_title_is_wrapped_anew_and_stands_above_the_plot():
    label = ("a drop of GAD-7 4, PHQ-9 5 or PCL-5 10+ points on each patient's own questionnaire "
             "(matched to diagnosis)")
    wide = figures.create_relief_figure(curve_table(), at_risk_table(), label)
    phone = figures.fit_for_phone(wide)
    lines = _lines(phone.layout.title.text)
    # wrapped from the whole title: no line is a desktop line's leftover word ("or")
    assert " ".join(lines) == wide.layout.title.text.replace("<br>", " ")
    assert all(len(line) <= figures.PHONE_LINE_CHARS for line in lines) and min(len(line) for line in lines) > 5
    # three or more lines: the title at the top of the figure, the plot below all of them
    assert len(lines) >= 3 and phone.layout.title.yref == "container" and phone.layout.title.yanchor == "top"
    assert phone.layout.margin.t >= 24 + 22 * len(lines)


# --- figures assembled as dicts (figures._Draft) equal those of Plotly's object API -----------------------

DRAFT_GRIDS = [
    {},
    dict(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1, subplot_titles=("Response", "Remission")),
    dict(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.16),
    dict(rows=2, cols=2, shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.2,
         subplot_titles=["a", "b", "c", "d"]),
]


def _draft_steps(grid: dict) -> list[tuple[str, dict]]:
    """The calls the builders make, on every cell of `grid`: traces of each kind, axes updated everywhere, by
    row, by column and by cell (merging into what an earlier update set), annotations, layout updates."""
    rows, cols = grid.get("rows", 1), grid.get("cols", 1)
    cell = (lambda r, c: {"row": r, "col": c}) if grid else (lambda r, c: {})
    steps: list[tuple[str, dict]] = []
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            steps += [
                ("scatter", dict(x=np.array([0.0, 1.5, 3.0]), y=[0.2, NAN, 0.9], mode="lines+markers", name=f"{r}{c}",
                                 line=dict(color="#0072B2", dash="dot", shape="hv"), legendgroup="IV",
                                 customdata=np.column_stack([[1, 2, 3], [4, 5, 6]]),
                                 error_x=dict(type="data", array=[0.1, 0.0, 0.2]), **cell(r, c))),
                ("bar", dict(x=[3], y=["IV"], orientation="h", text=["hidden"], textposition="outside",
                             marker=dict(color="#E69F00", pattern=dict(shape="/")), showlegend=False, **cell(r, c))),
                ("annotation", dict(text="Not in the clinic export", x=0.5, y="IV", showarrow=False,
                                    font=dict(size=13), **cell(r, c))),
            ]
    steps += [
        ("heatmap", dict(z=[[1.0, NAN]], x=["a", "b"], y=["IV"], texttemplate="%{text}", text=[["1", "hidden"]],
                         colorbar=dict(title=dict(text="Sessions (%)")), **cell(1, 1))),
        ("xaxes", dict(range=[0, 1.02], tickformat=".0%", tickvals=[0, 0.5, 1])),
        ("xaxes", dict(title_text="% of patients")),
        ("yaxes", dict(autorange="reversed", title_text="", title_font=dict(size=12))),
        ("yaxes", dict(title_text="Route", **({"col": 1} if grid else {}))),
        ("xaxes", dict(title_text="Days", **({"row": rows} if grid else {}))),
        ("xaxes", dict(showgrid=False, **cell(rows, cols))),
        ("layout", dict(barmode="stack", legend_traceorder="normal")),
        ("layout", dict(plot_bgcolor="#DDDDDD")),
        ("annotation", dict(text="paper note", x=0, y=-0.18, xref="paper", yref="paper", showarrow=False)),
        # shorthand and nested forms of one property, each after the other: the later call wins
        ("yaxes", dict(title=dict(text="nested", font=dict(size=9)))),
        ("yaxes", dict(title_text="shorthand after nested")),
        ("layout", dict(legend=dict(traceorder="reversed", x=0.5))),
        ("xaxes", dict(title_font_size=15)),
        ("xaxes", dict(title=dict(font=dict(size=11)))),
        ("annotation", dict(text="in the cell's domain", x=0.5, y=1, xref="x domain", yref="y domain",
                            showarrow=False, **cell(rows, cols))),
    ]
    return steps


@pytest.mark.parametrize("grid", DRAFT_GRIDS, ids=["single", "1x2", "2x1", "2x2"])
def test_draft_figure_equals_the_object_api(grid: dict) -> None:
    """Every call a builder makes on a `_Draft` gives the figure the same calls on `go.Figure` /
    `make_subplots` give, the common title and layout (`_base_layout_properties`) included (compared as Plotly's JSON)."""
    from plotly.subplots import make_subplots

    expected = make_subplots(**grid) if grid else go.Figure()
    draft = figures._Draft(**grid)
    kinds = {"scatter": go.Scatter, "bar": go.Bar, "heatmap": go.Heatmap}
    for kind, args in _draft_steps(grid):
        args = dict(args)
        if kind in kinds:
            where = {k: args.pop(k) for k in ("row", "col") if k in args}
            expected.add_trace(kinds[kind](**args), **where)
            draft.add_trace(figures._trace(kind, **args), **where)
        else:
            method = {"annotation": "add_annotation", "xaxes": "update_xaxes", "yaxes": "update_yaxes",
                      "layout": "update_layout"}[kind]
            getattr(expected, method)(**args)
            getattr(draft, method)(**args)
    title = "A long title " * 8
    expected.update_layout(**figures._base_layout_properties(title, height=400, legend=False))
    # the room for the labels, from the object API's resolved figure: the draft holds shorthand ("title_text")
    resolved = expected.to_dict()
    room = figures.labelled_margins(resolved["layout"], resolved["data"])
    assert room and room["l"] > figures.BASE_MARGIN_PX and room["b"] > figures.BASE_MARGIN_PX
    expected.update_layout(margin=room)
    # as data: the keys of a dict may come in another order
    assert json.loads(draft.figure(title, height=400, legend=False).to_json()) == json.loads(expected.to_json())


def test_text_px_is_arials_advance_widths() -> None:
    """The widths table is Liberation Sans's advance widths (Arial's metrics), read from the font file that
    `python3 dev.py test` installs (fonts-liberation); a character missing from it counts as the widest."""
    from fontTools.ttLib import TTFont

    font = TTFont("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")
    glyphs, advances, em = font.getBestCmap(), font["hmtx"], font["head"].unitsPerEm
    for ch, width in figures._ARIAL_EMS.items():
        assert width == pytest.approx(advances[glyphs[ord(ch)]][0] / em, abs=0.0005), ch
    assert {*"0123456789%,.–−’ éüöç"} <= set(figures._ARIAL_EMS)
    assert figures.text_px("100%", 13) == pytest.approx((3 * 0.556 + 0.889) * 13)
    assert figures.text_px("漢", 13) == pytest.approx(figures._WIDEST_EM * 13)


def test_the_margins_read_every_form_plotly_takes() -> None:
    """`labelled_margins` reads a draft as Plotly would: nested properties, shorthand at any depth, arrays, Plotly
    objects, "auto" angles; it never raises (it only saves the browser a second drawing). Axes that draw no labels
    and a legend inside the plot take no room."""
    cats = ["IV infusion", "All routes"]
    bar = [{"type": "bar", "x": [1, 2], "y": np.array(cats, dtype=object), "orientation": "h"}]
    nested = figures.labelled_margins({"yaxis": {"title": {"text": "Route", "font": {"size": 26}}}}, bar)
    for layout in ({"yaxis": {"title_text": "Route", "title_font_size": 26}},
                   {"yaxis": {"title": {"text": "Route", "font_size": 26}}},
                   {"yaxis_title_text": "Route", "yaxis_title_font": {"size": 26}},
                   {"yaxis": go.layout.YAxis(title=dict(text="Route", font=dict(size=26)))}):
        assert figures.labelled_margins(layout, bar) == nested, layout
    assert nested["l"] > figures.labelled_margins({"yaxis": {"title_text": "Route"}}, bar)["l"]
    for layout in ({"yaxis": {"tickformat": ".0%", "tickvals": np.array([0, 0.5, 1])}},
                   {"yaxis": {"categoryarray": np.array(cats)}}, {"xaxis": {"domain": np.array([0, 0.5])}},
                   {"xaxis": {"tickangle": "auto"}}, {"yaxis": None}, {"yaxis": {"tickformat": "%b %Y"}}):
        figures.labelled_margins(layout, bar)  # no exception
    hidden = figures.labelled_margins({"yaxis": {"visible": False}, "xaxis": {"visible": False}}, bar)
    assert hidden is None or (hidden["l"] <= figures._SLACK_PX and "b" not in hidden)
    unlabelled = figures.labelled_margins({"yaxis": {"showticklabels": False}}, bar)
    assert unlabelled["l"] == figures._SLACK_PX
    named = [{**bar[0], "name": "A rather long legend entry"}, {**bar[0], "name": "Another"}]
    assert figures.labelled_margins({"legend": {"x": 0.02}}, named)["r"] == figures._RIGHT_PX
    assert figures.labelled_margins({}, named)["r"] > 150
    # traces all on a second axis: no phantom first axis
    second = [{**bar[0], "xaxis": "x2", "yaxis": "y2"}]
    assert figures.labelled_margins({"yaxis2": {"anchor": "x2"}, "xaxis2": {"anchor": "y2"}}, second) is not None


def test_the_margins_make_room_for_the_labels_of_each_chart() -> None:
    """`labelled_margins`, as the builders' figures carry it: the left margin holds the longest category label
    and the axis title, the right one the longest legend entry, the bottom one turned category labels; a figure
    whose numeric ticks Plotly chooses keeps the base margins (Plotly grows them as before); a phone's layout
    starts again from the base."""
    funnel = figures.create_funnel_figure(pd.DataFrame({
        "route": ["IV", spec.ALL], **{col: [40, 60] for col, _ in figures.FUNNEL_STEPS}}))
    longest = max(figures.text_px(label, 13) for _, label in figures.FUNNEL_STEPS)
    assert funnel.layout.margin.l >= longest + 15 and funnel.layout.margin.b > figures.BASE_MARGIN_PX
    quarters = [f"{y}-Q{q}" for y in (2023, 2024, 2025, 2026) for q in (1, 2, 3, 4)]
    trend = figures.create_trend_figure(pd.DataFrame({
        "start_quarter": quarters * 2, "route": ["SL"] * 16 + [spec.ALL] * 16, "patients": [30] * 32,
        "evaluable": [30] * 32, "responders": [12] * 32, "response_rate": [0.4] * 32,
        "response_ci_low": [0.25] * 32, "response_ci_high": [0.55] * 32}))
    names = {t.name for t in trend.data if t.showlegend is not False}
    assert trend.layout.margin.r >= max(figures.text_px(n, 13) for n in names) + 60
    # sixteen quarters do not fit side by side: Plotly turns them, and the bottom margin has room for that
    few = figures.create_trend_figure(pd.DataFrame({
        "start_quarter": quarters[:3], "route": ["SL"] * 3, "patients": [30] * 3, "evaluable": [30] * 3,
        "responders": [12] * 3, "response_rate": [0.4] * 3, "response_ci_low": [0.25] * 3,
        "response_ci_high": [0.55] * 3}))
    assert trend.layout.margin.b > few.layout.margin.b > figures.BASE_MARGIN_PX
    draft = figures._Draft()
    draft.add_trace(figures._trace("scatter", x=[1, 2], y=[3.5, 700.0], name="counts"))
    numeric = draft.figure("Plotly chooses the ticks")
    assert (numeric.layout.margin.l, numeric.layout.margin.r, numeric.layout.margin.b) == (figures.BASE_MARGIN_PX,) * 3
    # a phone's layout has its own: the funnel's steps wrapped in two lines take less than on a desktop
    phone = figures.fit_for_phone(funnel)
    wrapped = max(figures.text_px(line, 13) for label in phone.data[0].y for line in str(label).split("<br>"))
    assert wrapped + 15 <= phone.layout.margin.l < funnel.layout.margin.l
    assert figures.fit_for_phone(numeric).layout.margin.l == figures.BASE_MARGIN_PX


def test_a_phone_layout_is_given_the_margins_its_labels_and_legend_take() -> None:
    """`phone_margins` (called by `fit_for_phone`): the legend below the plot takes its rows, entries side by
    side as Plotly lays them out; quarters that do not fit side by side stand upright; a percentage axis's
    "100%" at its end has room on the right; a short chart is made taller rather than its plot squeezed (one
    route's maintenance rates left it 21 pixels)."""
    entry = figures._LEGEND_TEXT_SHARE * figures.text_px("Intravenous", 13) + figures._LEGEND_ENTRY_PAD
    fits = 2 * entry + figures._LEGEND_ITEM_GAP + figures._SLACK_PX
    assert figures.legend_rows(["Intravenous"] * 2, fits) == 1
    assert figures.legend_rows(["Intravenous"] * 2, fits - 1) == 2
    assert figures.legend_rows(["Intravenous"] * 5, fits) == 3
    assert figures.legend_rows(["Intravenous"], 10) == 1  # one entry wider than the legend: still one row
    quarters = [f"{y}-Q{q}" for y in (2023, 2024, 2025, 2026) for q in (1, 2, 3, 4)]
    trend = figures.fit_for_phone(figures.create_trend_figure(pd.DataFrame({
        "start_quarter": quarters * 2, "route": ["SL"] * 16 + [spec.ALL] * 16, "patients": [30] * 32,
        "evaluable": [30] * 32, "responders": [12] * 32, "response_rate": [0.4] * 32,
        "response_ci_low": [0.25] * 32, "response_ci_high": [0.55] * 32})))
    assert trend.layout.legend.orientation == "h"
    names = list(dict.fromkeys(t.name for t in trend.data if t.showlegend is not False and t.name))
    plot_px = figures.PHONE_CHART_PX - trend.layout.margin.l - trend.layout.margin.r
    rows = figures.legend_rows(names, plot_px)
    upright = max(figures.text_px(q, 13) for q in quarters)
    assert trend.layout.margin.b >= figures.PHONE_LEGEND_ROW_PX * rows + upright + figures._X_TITLE_PX
    # on a desktop the same quarters turn by 30 degrees only
    desktop = figures.create_trend_figure(pd.DataFrame({
        "start_quarter": quarters, "route": ["SL"] * 16, "patients": [30] * 16, "evaluable": [30] * 16,
        "responders": [12] * 16, "response_rate": [0.4] * 16, "response_ci_low": [0.25] * 16,
        "response_ci_high": [0.55] * 16}))
    assert desktop.layout.margin.b < figures._X_LABELS_PX + upright + figures._X_TITLE_PX
    # "100%" of a percentage axis Plotly ticks itself may end the axis: half of it stands out on the right
    bar = [figures._trace("bar", x=[0.4, 0.9], y=["Intravenous", "Intranasal"], orientation="h")]
    room = figures.phone_margins({"xaxis": {"tickformat": ".0%"}}, bar)
    assert room["r"] >= figures.text_px("100%", 13) / 2 + figures._PLOTLY_PAD_PX
    assert figures.phone_margins({"xaxis": {"tickformat": ".0%"}, "yaxis": {"tickformat": ".0%"}},
                                 [figures._trace("scatter", x=[0.1, 0.2], y=[0.3, 0.4])])["r"] > figures.BASE_MARGIN_PX
    # a numeric axis Plotly ticks itself: not told beforehand
    assert figures.phone_margins({}, [figures._trace("scatter", x=[1, 2], y=[3.5, 700.0])]) is None
    short = figures.fit_for_phone(figures.create_maintenance_rates_figure(maintenance_table()))
    layout = short.layout
    assert layout.height - layout.margin.t - layout.margin.b >= figures.PHONE_MIN_PLOT_PX
    assert layout.height > figures.create_maintenance_rates_figure(maintenance_table()).layout.height


def test_the_margins_estimate_reads_unusual_axes_as_plotly_draws_them() -> None:
    """Found by a reviewer's 20,000 random figures and the builders on unusual data: a turned angle beyond 90
    degrees slants as its supplement; tick values in a NumPy array read as a list; an empty tick text, a range
    left open or reversed, a plot too narrow for the labels leave the estimate out (never an exception, never a
    margin wider than the phone); a left panel's labels do not widen the right margin; a heatmap a phone does not
    turn keeps room for its colour bar; a legend of one entry goes below on a phone; Plotly's padding of points on
    a category axis (5 % and half a marker each end) turns thirty-two quarters upright."""
    bars = [figures._trace("bar", x=["Intravenous infusion", "Oral"], y=[0.4, 0.9])]
    flat = figures.labelled_margins({"yaxis": {"tickformat": ".0%"}}, bars)
    for angle, same in ((180, 0), (135, 45), (-150, 30)):
        assert (figures.labelled_margins({"xaxis": {"tickangle": angle}, "yaxis": {"tickformat": ".0%"}}, bars)
                == figures.labelled_margins({"xaxis": {"tickangle": same}, "yaxis": {"tickformat": ".0%"}}, bars))
    assert figures.labelled_margins({"xaxis": {"tickangle": 45}, "yaxis": {"tickformat": ".0%"}}, bars)["b"] > flat["b"]
    as_list = figures.phone_margins({"xaxis": {"tickformat": ".0%", "tickvals": [0, 0.5, 1], "range": [0, 1]}}, bars[:0]
                                    + [figures._trace("bar", x=[0.4], y=["Oral"], orientation="h")])
    as_array = figures.phone_margins(
        go.Layout(xaxis=dict(tickformat=".0%", tickvals=np.array([0, 0.5, 1]), range=[0, 1])).to_plotly_json(),
        [go.Bar(x=np.array([0.4]), y=["Oral"], orientation="h").to_plotly_json()])
    assert as_array == as_list and as_list["r"] > figures.BASE_MARGIN_PX
    draft = figures._Draft()
    draft.add_trace(figures._trace("bar", x=["a", "b"], y=[0.4, 0.9]))
    draft.update_xaxes(tickvals=[], ticktext=[])
    draft.update_yaxes(tickformat=".0%")
    figures.fit_for_phone(draft.figure("No tick labels"))  # no exception
    horizontal = [figures._trace("bar", x=[0.4], y=["Oral"], orientation="h")]
    for span in ([1.02, 0], [0.5, None], [1e-300, 0]):
        room = figures.phone_margins({"xaxis": {"tickformat": ".0%", "tickvals": [0, 0.25, 0.5, 0.75, 1],
                                                "range": span}}, horizontal)
        assert room is None or room["l"] + room["r"] <= figures.PHONE_CHART_PX - figures._PLOTLY_MIN_PLOT_PX, span
    assert figures.phone_margins({"yaxis": {"tickfont": {"size": 90}}}, bars) is None  # the labels leave no plot
    # two panels: the left one's long last label stands over the right panel, not beyond the figure
    panels = {"xaxis": {"domain": [0, 0.45]}, "xaxis2": {"domain": [0.55, 1], "anchor": "y2"},
              "yaxis2": {"anchor": "x2", "tickformat": ".0%"}, "yaxis": {"tickformat": ".0%"}}
    left_long = [figures._trace("bar", x=["a", "A very long last category name"], y=[1, 2]),
                 figures._trace("bar", x=["a", "b"], y=[1, 2], xaxis="x2", yaxis="y2")]
    assert figures.phone_margins(panels, left_long)["r"] == figures.BASE_MARGIN_PX
    rows = [dict(route=r, event=e, sessions=600, sessions_with_event=20, session_rate=20 / 600, patients=100,
                 patients_with_event=20, patient_rate=0.2) for r in ("IV", "IM", "ALL") for e in ("nausea", "vomiting")]
    unturned = figures.fit_for_phone(figures.create_side_effect_heatmap(pd.DataFrame(rows)))
    assert unturned.data[0].colorbar.orientation != "h" and unturned.layout.margin.r >= figures._COLORBAR_PX
    fade = pd.DataFrame([("IV", "dissociation", n, 100, 60 - 5 * n) for n in range(1, 13)],
                        columns=["route", "event", "session_number", "sessions", "sessions_with_event"])
    fade["session_rate"] = fade["sessions_with_event"] / fade["sessions"]
    one = figures.create_fade_figure(fade, "dissociation")
    assert one.layout.showlegend is True and figures.fit_for_phone(one).layout.legend.orientation == "h"
    quarters = [f"{2015 + i // 4}-Q{i % 4 + 1}" for i in range(32)]
    trend = figures.create_trend_figure(pd.DataFrame({
        "start_quarter": quarters, "route": ["IV"] * 32, "patients": [30] * 32, "evaluable": [30] * 32,
        "responders": [12] * 32, "response_rate": [0.4] * 32, "response_ci_low": [0.25] * 32,
        "response_ci_high": [0.55] * 32}))
    assert trend.layout.margin.b >= figures.text_px("2015-Q1", 13) + figures._X_TITLE_PX + 20  # upright


def test_draft_grids_are_not_shared_between_figures() -> None:
    """The subplot grid is computed once and copied: a figure's changes never reach the next one's."""
    first = figures._Draft(rows=1, cols=2, shared_yaxes=True)
    first.update_xaxes(title_text="first", row=1, col=1)
    first.add_annotation(text="first", x=0, y=0, row=1, col=2)
    second = figures._Draft(rows=1, cols=2, shared_yaxes=True).figure("second")
    assert second.layout.xaxis.title.text is None
    assert not second.layout.annotations


def test_draft_updates_never_change_the_values_passed_in() -> None:
    """A dict given to one update is copied: merging a later update into it leaves the caller's (here the
    module's FONT, which every chart's layout starts from) as it was."""
    before = dict(figures.FONT)
    draft = figures._Draft()
    draft.update_layout(font=figures.FONT)
    draft.update_layout(font=dict(size=99, color="red"))
    assert draft.layout["font"]["size"] == 99
    assert figures.FONT == before
    draft.figure("t")  # the chart's own font, merged over the one set
    draft.update_layout(font=dict(size=98))
    assert figures.FONT == before


def test_why_esketamine_monitoring_has_nothing_to_show():
    """One rule and one wording for the page and the PDF report: a withheld count is "too few to show" (naming
    the minimum cell), a shown 0 is "no sessions", any sessions leave the figures to speak."""
    hidden, lead, rest = figures.rems_unshown(NAN, 11)
    assert hidden and lead == "Too few to show:" and "fewer than 11 patients or sessions" in rest
    assert figures.rems_unshown(pd.NA, 5)[0] is True
    none = figures.rems_unshown(0, 11)
    assert none is not None and not none[0]
    assert f"{none[1]} {none[2]}".startswith("No esketamine sessions held in the clinic match these filters.")
    assert "route IN" not in none[2]  # plain words on screen
    assert figures.rems_unshown(12, 11) is None and figures.rems_unshown(1.0, 0) is None
