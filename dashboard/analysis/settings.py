"""The cohort filters and analysis settings: one frozen, validated object and its three spellings.

A `Settings` value is what every metric, export and page is computed from. It converts to and from
command-line flags (`--route IV --route IN --age-band 25-34`) and URL query parameters
(`route=IV&route=IN&age_band=25-34`), with the same names, so a shared link and a command line describe
the same view. Multi-valued filters are kept sorted in the spec's order, so two equal selections are equal
objects (and hit the same cache entries). Defaults are left out of the URL and the flags.

`scope` is the one field that is not a filter anyone can choose: the sites the signed-in person may see
(None: every site), set from their identity by `dashboard.analysis.access`, never from a link or the
filter flags. The cohort is always the intersection of `scope` and the `site` filter
(`effective_sites`), and `cohort_params` binds that, so every query obeys it; an empty intersection is an
empty cohort, never every site. Because `scope` is a field, it is part of every cache key.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dashboard.data import spec


class SettingsError(ValueError):
    """Invalid filter or setting values. `problems` lists one message per offending parameter."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# name -> (allowed values or None for free codes, what the value is)
_MULTI: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "route": (spec.ROUTES, "route"),
    "site": (None, "site code"),
    "diagnosis": (spec.DIAGNOSES, "primary diagnosis"),
    "sex": (spec.SEXES, "sex"),
    "age_band": (spec.AGE_BANDS, "age band"),
    "setting": (spec.SETTINGS, "setting"),
    "severity": (spec.SEVERITY_BANDS, "baseline severity band"),
}
# A whole number in a link or flag: ASCII digits only. Python's int() also takes "٧" (Arabic-Indic seven),
# "1_4" and surrounding spaces, and float parsing takes "inf" / "1e999"; none of them is a number a person
# typed into this dashboard, so all are refused (issue 12).
_DIGITS = re.compile(r"[0-9]{1,9}", re.ASCII)
_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


@dataclass(frozen=True)
class Settings:
    """Cohort filters (empty means no filter) and analysis settings, validated on construction."""

    # cohort filters
    route: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    diagnosis: tuple[str, ...] = ()
    sex: tuple[str, ...] = ()
    age_band: tuple[str, ...] = ()
    from_quarter: str | None = None
    to_quarter: str | None = None
    treatment_resistant: bool | None = None
    setting: tuple[str, ...] = ()
    integration: bool | None = None
    severity: tuple[str, ...] = ()
    # analysis settings
    instrument: str = spec.DEFAULT_INSTRUMENT
    min_baseline: int | None = None  # None: the instrument's default (spec.DEFAULT_MIN_BASELINE)
    population: str = spec.DEFAULT_POPULATION
    relief: str = spec.DEFAULT_RELIEF
    window: int = spec.DEFAULT_WINDOW
    min_cell: int = spec.DEFAULT_MIN_CELL
    rems_minutes: int = spec.DEFAULT_REMS_MINUTES  # esketamine monitoring minimum (metrics.md, rems.csv)
    # access: the sites this person may see (None: every site); not a URL parameter or filter flag
    scope: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.scope is not None:
            raw_scope = (self.scope,) if isinstance(self.scope, str) else tuple(self.scope)
            scope = tuple(sorted(dict.fromkeys(str(v) for v in raw_scope)))
            problems += [f"scope: {quoted(v)} is not a site code (1–32 letters, digits, '-' or '_')"
                         for v in scope if not spec.SITE_PATTERN.match(v)]
            object.__setattr__(self, "scope", scope)
        for name, (allowed, what) in _MULTI.items():
            raw = getattr(self, name)
            if raw is None:
                raw = ()
            elif isinstance(raw, str):
                raw = (raw,)
            values = tuple(dict.fromkeys(str(v) for v in raw))
            for v in values:
                if allowed is None:
                    if not spec.SITE_PATTERN.match(v):
                        problems.append(f"{name}: {quoted(v)} is not {article(what)} (1–32 letters, digits, '-' or '_')")
                elif v not in allowed:
                    problems.append(f"{name}: {quoted(v)} is not {article(what)}; expected one of {', '.join(allowed)}")
            if allowed is not None:
                values = tuple(sorted(values, key=lambda v: allowed.index(v) if v in allowed else 99))
            else:
                values = tuple(sorted(values))
            object.__setattr__(self, name, values)
        for name in ("from_quarter", "to_quarter"):
            v = getattr(self, name)
            if v is not None and not spec.QUARTER_PATTERN.match(str(v)):
                problems.append(f"{name}: {quoted(v)} is not a quarter like 2025-Q3")
        if (
            self.from_quarter and self.to_quarter
            and spec.QUARTER_PATTERN.match(self.from_quarter) and spec.QUARTER_PATTERN.match(self.to_quarter)
            and self.from_quarter > self.to_quarter
        ):
            problems.append(f"from_quarter: {quoted(self.from_quarter)} is after the end quarter {quoted(self.to_quarter)}")
        for name in ("treatment_resistant", "integration"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                problems.append(f"{name}: {quoted(v)} is not yes or no")
        if self.instrument not in spec.INSTRUMENT_SETTINGS:
            problems.append(f"instrument: {quoted(self.instrument)} is not one of {', '.join(spec.INSTRUMENT_SETTINGS)}")
        elif self.instrument == spec.MATCHED and self.min_baseline is not None:
            # each patient is held to their own questionnaire's minimum: one number cannot serve three scales
            problems.append(MATCHED_MIN_BASELINE_PROBLEM.format(value=quoted(self.min_baseline)))
        elif self.min_baseline is not None:
            lo, hi = spec.SCORE_RANGE[self.instrument]
            if not _is_int(self.min_baseline) or not lo <= self.min_baseline <= hi:
                problems.append(
                    f"min_baseline: {quoted(self.min_baseline)} is not a whole score from {lo} to {hi} on {self.instrument}"
                )
        if self.population not in spec.POPULATIONS:
            problems.append(f"population: {quoted(self.population)} is not one of {', '.join(spec.POPULATIONS)}")
        if self.relief not in spec.RELIEF_THRESHOLDS:
            problems.append(f"relief: {quoted(self.relief)} is not one of {', '.join(spec.RELIEF_THRESHOLDS)}")
        if not _is_int(self.window) or not 0 <= self.window <= spec.MAX_WINDOW:
            problems.append(f"window: {quoted(self.window)} is not a whole number of days from 0 to {spec.MAX_WINDOW}")
        if not _is_int(self.min_cell) or not 0 <= self.min_cell <= spec.MAX_MIN_CELL:
            problems.append(f"min_cell: {quoted(self.min_cell)} is not a whole number from 0 to {spec.MAX_MIN_CELL}")
        if not _is_int(self.rems_minutes) or not 0 <= self.rems_minutes <= spec.MAX_REMS_MINUTES:
            problems.append(
                f"rems_minutes: {quoted(self.rems_minutes)} is not a whole number of minutes from 0 to {spec.MAX_REMS_MINUTES}")
        if problems:
            raise SettingsError(problems)

    # --- derived values ---------------------------------------------------------------------------------

    @property
    def matched(self) -> bool:
        """True under `instrument=matched`: each patient on the questionnaire of their diagnosis."""
        return self.instrument == spec.MATCHED

    @property
    def baseline_minimum(self) -> int | None:
        """The minimum baseline in force: the chosen one, or the instrument's default. None under `matched`,
        where each patient's questionnaire's default applies (the queries bind NULL and take the row's own)."""
        if self.matched:
            return None
        if self.min_baseline is None:
            return spec.DEFAULT_MIN_BASELINE[self.instrument]
        return self.min_baseline

    @property
    def remission_cut(self) -> int | None:
        """The remission cut; None under `matched` (each patient's questionnaire's)."""
        return None if self.matched else spec.REMISSION_CUT[self.instrument]

    @property
    def mcid(self) -> int | None:
        """The minimal important drop in points; None under `matched` (each patient's questionnaire's)."""
        return None if self.matched else spec.MCID[self.instrument]

    @property
    def instrument_label(self) -> str:
        """The instrument setting in words: 'GAD-7', or 'Matched to diagnosis' (codes stay in links and files)."""
        return spec.INSTRUMENT_SETTING_LABELS[self.instrument]

    # Words for pages and the PDF: "on {instrument_words}", "a score of {remission_words} or less", ...

    @property
    def instrument_words(self) -> str:
        """'GAD-7', or "each patient's own questionnaire (matched to diagnosis)"."""
        if self.matched:
            return "each patient's own questionnaire (matched to diagnosis)"
        return spec.INSTRUMENT_LABELS[self.instrument]

    @property
    def remission_words(self) -> str:
        """The remission cut: '4', or 'GAD-7 4, PHQ-9 4 or PCL-5 32' under matched."""
        return _per_instrument(spec.REMISSION_CUT) if self.matched else str(self.remission_cut)

    @property
    def mcid_words(self) -> str:
        """The MCID in points: '4', or 'GAD-7 4, PHQ-9 5 or PCL-5 10' under matched."""
        return _per_instrument(spec.MCID) if self.matched else str(self.mcid)

    @property
    def baseline_words(self) -> str:
        """The minimum baseline: '10', or 'GAD-7 10, PHQ-9 10 or PCL-5 33' under matched."""
        return _per_instrument(spec.DEFAULT_MIN_BASELINE) if self.matched else str(self.baseline_minimum)

    def is_filtered(self) -> bool:
        """True when any cohort filter is active."""
        return any(getattr(self, f.name) not in ((), None) for f in dataclasses.fields(self) if f.name in FILTER_NAMES)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def effective_sites(self) -> tuple[str, ...] | None:
        """The sites the cohort may contain: the `site` filter within the scope (None: no restriction).

        An empty tuple means no site at all (a filter wholly outside the scope, or an empty scope)."""
        if self.scope is None:
            return self.site or None
        if not self.site:
            return self.scope
        return tuple(v for v in self.site if v in self.scope)

    def sites_outside_scope(self) -> tuple[str, ...]:
        """The `site` filter's values this person may not see (a shared link's sites to name and drop)."""
        if self.scope is None:
            return ()
        return tuple(v for v in self.site if v not in self.scope)

    def within_scope(self) -> "Settings":
        """These settings with the `site` filter's values outside the scope dropped."""
        outside = self.sites_outside_scope()
        return self.replace(site=tuple(v for v in self.site if v not in outside)) if outside else self

    # --- SQL parameters ---------------------------------------------------------------------------------

    def cohort_params(self) -> dict[str, Any]:
        """Named parameters for the cohort filter in queries/*.sql. Empty filters bind as NULL (no filter);
        `sites` binds `effective_sites` (the scope applied), where an empty list matches no patient."""
        # under `matched` the floors bind NULL: each row takes its own questionnaire's (derive_30_cohort_macro.sql)
        floors = spec.SEVERITY_BAND_FLOORS.get(self.instrument, {"mild": None, "moderate": None, "severe": None})
        return {
            "routes": list(self.route) or None,
            # the scope applies here, so no query can forget it; [] (not NULL) matches no site
            "sites": None if self.effective_sites is None else list(self.effective_sites),
            "diagnoses": list(self.diagnosis) or None,
            "sexes": list(self.sex) or None,
            "age_bands": list(self.age_band) or None,
            "from_quarter": self.from_quarter,
            "to_quarter": self.to_quarter,
            "treatment_resistant": self.treatment_resistant,
            "settings": list(self.setting) or None,
            "integration": self.integration,
            "severities": list(self.severity) or None,
            "instrument": self.instrument,
            "mild_floor": floors["mild"],
            "moderate_floor": floors["moderate"],
            "severe_floor": floors["severe"],
        }

    # --- URL query parameters ---------------------------------------------------------------------------

    def to_query_params(self) -> list[tuple[str, str]]:
        """Query-string pairs in a fixed order, defaults left out."""
        pairs: list[tuple[str, str]] = []
        default = _DEFAULT
        for f in dataclasses.fields(self):
            if f.name not in _FIELD_NAMES:  # the scope comes from sign-in, never from a link
                continue
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            if isinstance(value, tuple):
                pairs.extend((f.name, v) for v in value)
            elif isinstance(value, bool):
                pairs.append((f.name, "yes" if value else "no"))
            else:
                pairs.append((f.name, str(value)))
        return pairs

    def to_query_string(self) -> str:
        from urllib.parse import urlencode

        return urlencode(self.to_query_params())

    @classmethod
    def from_query_params(cls, params: Mapping[str, Any], *, ignore_unknown: bool = True) -> "Settings":
        """Parse query parameters (values may be strings or lists of strings). Raises SettingsError.

        From Streamlit pass every value of a repeated key: `{k: st.query_params.get_all(k) for k in st.query_params}`
        (`st.query_params.items()` gives only the last one)."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for key, raw in params.items():
            items = [raw] if isinstance(raw, str) else list(raw)
            if key not in _FIELD_NAMES:
                if not ignore_unknown:
                    problems.append(f"{key}: unknown parameter")
                continue
            try:
                values[key] = _parse_field(key, items)
            except SettingsError as exc:
                problems.extend(exc.problems)
        try:
            # validate what parsed, so every bad parameter is reported at once, not only the unparsable ones
            settings = cls(**values)
        except SettingsError as exc:
            problems.extend(exc.problems)
        if problems:
            raise SettingsError(sorted(problems, key=_problem_order))
        return settings

    # --- command-line flags -----------------------------------------------------------------------------

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the filter and setting flags (repeatable where a filter takes several values)."""
        g = parser.add_argument_group("cohort filters (repeat a flag to allow several values)")
        g.add_argument("--route", action="append", metavar="|".join(spec.ROUTES))
        g.add_argument("--site", action="append", metavar="CODE")
        g.add_argument("--diagnosis", action="append", metavar="|".join(spec.DIAGNOSES))
        g.add_argument("--sex", action="append", metavar="|".join(spec.SEXES))
        g.add_argument("--age-band", dest="age_band", action="append", metavar="|".join(spec.AGE_BANDS))
        g.add_argument("--from-quarter", dest="from_quarter", metavar="YYYY-Qn")
        g.add_argument("--to-quarter", dest="to_quarter", metavar="YYYY-Qn")
        g.add_argument("--treatment-resistant", dest="treatment_resistant", metavar="yes|no")
        g.add_argument("--setting", action="append", metavar="|".join(spec.SETTINGS))
        g.add_argument("--integration", metavar="yes|no")
        g.add_argument("--severity", action="append", metavar="|".join(spec.SEVERITY_BANDS))
        a = parser.add_argument_group("analysis settings")
        a.add_argument("--instrument", metavar="|".join(spec.INSTRUMENT_SETTINGS),
                       help=f"questionnaire (default {spec.DEFAULT_INSTRUMENT}); {spec.MATCHED}: each patient's "
                            "diagnosis decides (MDD, OTHER: PHQ9; PTSD: PCL5; the others: GAD7)")
        a.add_argument("--min-baseline", dest="min_baseline", metavar="N")
        a.add_argument("--population", metavar="|".join(spec.POPULATIONS))
        a.add_argument("--relief", metavar="|".join(spec.RELIEF_THRESHOLDS))
        a.add_argument("--window", metavar="DAYS")
        a.add_argument("--min-cell", dest="min_cell", metavar="K")
        a.add_argument("--rems-minutes", dest="rems_minutes", metavar="MINUTES",
                       help=f"esketamine monitoring minimum in minutes (default {spec.DEFAULT_REMS_MINUTES})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        """Build from parsed flags (see add_arguments). Raises SettingsError naming the bad flags."""
        params = {name: getattr(args, name) for name in _FIELD_NAMES if getattr(args, name, None) is not None}
        try:
            return cls.from_query_params(params)
        except SettingsError as exc:
            raise SettingsError([_as_flag(p) for p in exc.problems]) from None

    def to_args(self) -> list[str]:
        """The flags that rebuild this object (defaults left out)."""
        out: list[str] = []
        for name, value in self.to_query_params():
            out += ["--" + name.replace("_", "-"), value]
        return out

    # --- description ------------------------------------------------------------------------------------

    def filter_words(self, name: str) -> list[str]:
        """The values of cohort filter `name` as the sidebar shows them: routes, diagnoses and sexes in words
        ("IV infusion"), the others as they are (codes stay in links and files)."""
        words = {"route": spec.ROUTE_LABELS, "diagnosis": spec.DIAGNOSIS_LABELS, "sex": spec.SEX_LABELS}
        return [words.get(name, {}).get(v, v) for v in getattr(self, name)]

    def describe_filters(self) -> str:
        """Plain-language description of the active cohort filters ('All patients' when none)."""
        parts: list[str] = []
        labels = {
            "route": "route", "site": "site", "diagnosis": "diagnosis", "sex": "sex", "age_band": "age",
            "setting": "setting",
            "severity": "baseline severity" + (" (on each patient's questionnaire)" if self.matched
                                               else f" ({spec.INSTRUMENT_LABELS[self.instrument]})"),
        }
        for name, label in labels.items():
            if getattr(self, name):
                said = self.filter_words(name)
                if name == "route":
                    parts.append(", ".join(said))
                elif name == "sex":
                    parts.append(" or ".join(said))
                else:
                    parts.append(f"{label} {', '.join(said)}")
        if self.scope is not None and not self.site:
            # "All patients" would overstate what someone limited to some sites is looking at
            parts.insert(1 if self.route else 0, f"site {', '.join(self.scope) or 'none'} (your access)")
        if self.from_quarter or self.to_quarter:
            parts.append(f"started {self.from_quarter or '…'} to {self.to_quarter or '…'}")
        if self.treatment_resistant is not None:
            parts.append("treatment-resistant" if self.treatment_resistant else "not treatment-resistant")
        if self.integration is not None:
            parts.append("with integration therapy" if self.integration else "without integration therapy")
        return "; ".join(parts) if parts else "All patients"


FILTER_NAMES = (
    "route", "site", "diagnosis", "sex", "age_band", "from_quarter", "to_quarter",
    "treatment_resistant", "setting", "integration", "severity",
)
SETTING_NAMES = ("instrument", "min_baseline", "population", "relief", "window", "min_cell", "rems_minutes")
_FIELD_NAMES = FILTER_NAMES + SETTING_NAMES


def _per_instrument(values: Mapping[str, int]) -> str:
    """'GAD-7 4, PHQ-9 5 or PCL-5 10': one cut-off per questionnaire, in words."""
    said = [f"{spec.INSTRUMENT_LABELS[i]} {values[i]}" for i in spec.INSTRUMENTS]
    return ", ".join(said[:-1]) + " or " + said[-1]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


QUOTE_MAX = 60  # characters of a value from a link or flag that a notice repeats; a longer one is cut


def shortened(text: Any) -> str:
    """`text` as a notice repeats it: whole up to QUOTE_MAX characters, else cut there with an ellipsis and
    its length said ('XXXX…' (5,000 characters)), so a very long link value cannot fill the screen."""
    text = str(text)
    if len(text) <= QUOTE_MAX:
        return text
    return f"{text[:QUOTE_MAX]}… ({len(text):,} characters)"


def quoted(value: Any) -> str:
    """A value from a link or a flag quoted in a problem: its repr ('IV'), a text longer than QUOTE_MAX
    characters cut with an ellipsis and its length said ('XXXX…' (5,000 characters))."""
    if isinstance(value, str) and len(value) > QUOTE_MAX:
        return f"{value[:QUOTE_MAX] + '…'!r} ({len(value):,} characters)"
    return repr(value)


def article(noun: str) -> str:
    """'a route', 'an age band': the indefinite article a notice needs before a noun."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def repair_age_band(value: str) -> str:
    """'75 ' (or '75') -> '75+': in a hand-typed link `age_band=75+` the `+` arrives as a space (the form
    encoding of URLs), so the band that ends in '+' is recognised without it."""
    v = str(value).strip()
    return v + "+" if v + "+" in spec.AGE_BANDS else v


def _parse_field(name: str, items: list[Any]) -> Any:
    if name == "age_band":
        return tuple(repair_age_band(i) for i in items if str(i).strip() != "")
    if name in _MULTI:
        return tuple(str(i).strip() for i in items if str(i).strip() != "")
    if len(items) != 1:
        raise SettingsError([f"{name}: given {len(items)} times, expected once; the default was used"])
    raw = str(items[0]).strip()
    if name in ("treatment_resistant", "integration"):
        low = raw.lower()
        if low in _YES:
            return True
        if low in _NO:
            return False
        raise SettingsError([f"{name}: {quoted(raw)} is not yes or no"])
    if name in ("min_baseline", "window", "min_cell", "rems_minutes"):
        if not _DIGITS.fullmatch(raw):
            raise SettingsError([f"{name}: {quoted(raw)} is not a whole number (digits 0-9 only)"])
        return int(raw)
    if name == "instrument":
        # codes are upper case (gad7 -> GAD7); the matched setting is spelled in lower case
        return spec.MATCHED if raw.lower() == spec.MATCHED else raw.upper()
    return raw


def parse_problems(name: str, items: list[Any]) -> list[str]:
    """The problems of spelling one parameter's values (repeated single-valued key, a number that is not
    ASCII digits, yes/no that is neither), before any range check: [] when it parses. The dashboard drops
    such a parameter from the URL before its widget reads it, so the default applies (issue 12)."""
    if name not in _FIELD_NAMES:
        return []
    try:
        _parse_field(name, list(items))
    except SettingsError as exc:
        return exc.problems
    return []


def _problem_order(problem: str) -> int:
    name = problem.partition(":")[0]
    return _FIELD_NAMES.index(name) if name in _FIELD_NAMES else len(_FIELD_NAMES)


def _as_flag(problem: str) -> str:
    name, sep, rest = problem.partition(":")
    if sep and name in _FIELD_NAMES:
        # a problem naming another setting in the URL's spelling (name=value) names its flag instead
        rest = re.sub(r"\b(" + "|".join(_FIELD_NAMES) + r")=(\S+)",
                      lambda m: "--" + m.group(1).replace("_", "-") + " " + m.group(2), rest)
        rest = re.sub(r"\b(" + "|".join(_FIELD_NAMES) + r")\b(?= out)",
                      lambda m: "--" + m.group(1).replace("_", "-"), rest)
        return "--" + name.replace("_", "-") + sep + rest
    return problem


# A numeric minimum baseline with `matched` is refused (metrics.md "Matched instrument"), naming both settings
# and what to do; in the URL's spelling (from_args turns it into flags: --min-baseline, --instrument matched).
MATCHED_MIN_BASELINE_PROBLEM = (
    "min_baseline: {value} cannot be used with instrument=matched, where each patient's own questionnaire's "
    "default applies (GAD-7 10, PHQ-9 10, PCL-5 33); leave min_baseline out, or choose instrument=GAD7, "
    "instrument=PHQ9 or instrument=PCL5"
)


def iter_defaults() -> Iterable[tuple[str, Any]]:
    """(name, default) for every field, for forms that show the defaults."""
    return ((f.name, getattr(_DEFAULT, f.name)) for f in dataclasses.fields(Settings) if f.name in _FIELD_NAMES)


_DEFAULT = Settings()  # after the helpers: constructing it runs the validation
