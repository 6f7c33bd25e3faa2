"""Every definition the dashboard uses, in plain language: one text for the Data page and the PDF report.

`definitions(settings)` returns (term, text) pairs; the text uses `**bold**` and `*italic*` only, so the
dashboard draws it as Markdown and the report turns it into HTML (`definitions_html`). The numbers in it
(minimum baseline, window, cut-offs, minimum cell) are those of the settings in force.
"""

from __future__ import annotations

import html
import re

from dashboard.analysis.settings import Settings
from dashboard.data import spec


def definitions(s: Settings) -> list[tuple[str, str]]:
    """(term, text) pairs in reading order, for the settings in force."""
    instrument = s.instrument_words
    if s.matched:
        # each patient on their diagnosis' questionnaire, with its own cut-offs and bands
        severity = ("On each patient's own questionnaire: " + "; ".join(
            f"{spec.INSTRUMENT_LABELS[i]} {_bands(spec.SEVERITY_BAND_FLOORS[i])}" for i in spec.INSTRUMENTS) + ".")
        eligible = (f"({s.baseline_words} on each patient's own questionnaire, that questionnaire's default; "
                    "a single minimum cannot serve three questionnaires).")
    else:
        severity = f"On {instrument}: {_bands(spec.SEVERITY_BAND_FLOORS[s.instrument])}."
        eligible = (f"({s.baseline_minimum} on {instrument} now; the default is "
                    f"{spec.DEFAULT_MIN_BASELINE[s.instrument]}).")
    score_on = "score on the patient's own questionnaire" if s.matched else f"{instrument} score"
    matched = ([("Questionnaire", "Matched to diagnosis: each patient is measured on the questionnaire of their "
                                  "primary diagnosis — PHQ-9 for major depression and other diagnoses, PCL-5 for "
                                  "PTSD, GAD-7 for generalised anxiety, social anxiety, panic disorder and OCD — "
                                  "with that questionnaire's minimum baseline, remission cut-off, minimal important "
                                  "change and severity bands. Charts of scores show the improvement from baseline "
                                  "in percent instead, since the questionnaires' points differ.")]
               if s.matched else [])
    return matched + [
        ("Cohort", "The patients who pass every filter in the sidebar. A patient's **route** and **setting** are "
                   "those of their first session."),
        ("Baseline", f"The last {score_on} taken on or before the first session day and before dosing "
                     "(if there are several that day, the highest)."),
        ("Eligible", f"In the cohort, with at least one session and a baseline of at least the minimum "
                     + eligible),
        ("Follow-up score", "Any score after day 0, or taken after a dose. **Improvement** is the drop from "
                            "baseline as a share of the baseline."),
        ("Endpoint", f"The last follow-up score that was not taken straight after a dose, within {s.window} days "
                     "after the patient's last induction session. A score taken a few hours after a dose measures "
                     "the acute effect of that dose and is never an endpoint."),
        ("Response", "Improvement of 50 % or more at the endpoint. **Remission.** An endpoint score of "
                     f"{s.remission_words} or less on {instrument}. The two are measured differently: a patient "
                     "who started with a low score can reach remission without improving by half, so a route's "
                     "remission rate can be above its response rate."),
        ("Population", "*Observed*: rates are among eligible patients with an endpoint. *Intention to treat*: "
                       "among all eligible patients, and a missing endpoint counts as no response."),
        ("Interval", "Every rate has a 95 % Wilson interval: the range of true rates consistent with the data. "
                     "Wide intervals mean few patients."),
        ("Route comparison", "Differences in rate between each pair of routes with their 95 % intervals (for "
                             "each pair alone, not adjusted for making several comparisons), a chi-square test "
                             "across all routes, and p-values adjusted for making several comparisons "
                             "(Benjamini–Hochberg). Two routes differ beyond chance when the adjusted p-value is "
                             "below 0.05; otherwise they are not clearly different, even when the interval just "
                             "clears zero."),
        ("Time to relief", "Days from the first session to the first follow-up score meeting the relief "
                           "threshold — *response* (50 % improvement) or *minimal important change* (a drop of "
                           f"at least {spec.MCID['GAD7']} points on GAD-7, {spec.MCID['PHQ9']} on PHQ-9, "
                           f"{spec.MCID['PCL5']} on PCL-5). Post-dose scores count, at their hour (4 hours after "
                           "a dose on day 0 is day 0.17). Patients never relieved count until their last score "
                           "(Kaplan–Meier). The median is the first day by which half the patients were relieved."),
        ("Side effects", "Per session: the share of sessions with the effect recorded (any severity). Per "
                         "patient: the share of patients with the effect in at least one session of that route. "
                         f"*Severe blood pressure*: a peak of {spec.BP_SEVERE_SBP} systolic or "
                         f"{spec.BP_SEVERE_DBP} diastolic or more (mmHg)."),
        ("Maintenance", "*Uptake*: responders with at least one maintenance session. *Days to first "
                        "maintenance*: from the last induction session. *Sessions per patient-month*: maintenance "
                        "sessions divided by the months each maintenance patient has been in maintenance. "
                        "*Sustained response*: the probability (Kaplan–Meier) that a responder has not relapsed — "
                        "improvement fallen to 25 % or less — 8 weeks after the last induction session. The "
                        "*projection* applies each route's uptake and session rate to its current responders."),
        ("Baseline severity", severity),
        ("Privacy", f"With a minimum cell of k (now {s.min_cell}), no count from 1 to k − 1 is shown, nor any "
                    "rate, interval or median resting on fewer than k patients, nor anything that would let such "
                    "a count be worked out from the totals. The downloads follow the same rule. Shown counts "
                    "are also moved by a small amount fixed for each group of patients (by one or two, mostly; a "
                    "zero stays zero), so that comparing filters cannot give a small count back: the cohort of "
                    "the whole data set may read 5,001 where it holds 5,000, and a count may read one or two "
                    "above the count it is part of (15 evaluable patients of 14 eligible)."),
    ]


def _bands(floors: dict[str, int]) -> str:
    """'minimal below 5, mild 5–9, moderate 10–14, severe 15 or more'."""
    return (f"minimal below {floors['mild']}, mild {floors['mild']}–{floors['moderate'] - 1}, moderate "
            f"{floors['moderate']}–{floors['severe'] - 1}, severe {floors['severe']} or more")


def definitions_markdown(s: Settings) -> str:
    """The definitions as Markdown paragraphs (the Data and definitions page)."""
    return "\n\n".join(f"**{term}.** {text}" for term, text in definitions(s))


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"\*(.+?)\*")


def inline_html(text: str) -> str:
    """The definitions' Markdown subset (`**bold**`, `*italic*`) as escaped HTML."""
    escaped = html.escape(text, quote=False)
    return _ITALIC.sub(r"<i>\1</i>", _BOLD.sub(r"<b>\1</b>", escaped))


def definitions_html(s: Settings) -> str:
    """The definitions as HTML paragraphs (the PDF report)."""
    return "\n".join(f'<p class="definition"><b>{html.escape(term)}.</b> {inline_html(text)}</p>'
                     for term, text in definitions(s))
