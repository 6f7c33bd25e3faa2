"""The Settings object: validation with messages naming each bad parameter, and its URL and flag spellings."""

from __future__ import annotations

import argparse
from urllib.parse import parse_qs

import pytest

from dashboard.data import spec
from dashboard.analysis.settings import Settings, SettingsError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    Settings.add_arguments(p)
    return p


def from_flags(argv: list[str]) -> Settings:
    return Settings.from_args(parser().parse_args(argv))


FULL = Settings(
    route=("IN", "IV"), site=("S2", "S1"), diagnosis=("PTSD",), sex=("F", "X"), age_band=("25-34", "75+"),
    from_quarter="2024-Q2", to_quarter="2025-Q1", treatment_resistant=True, setting=("home",),
    integration=False, severity=("severe", "moderate"), instrument="PHQ9", min_baseline=12,
    population="itt", relief="mcid", window=14, min_cell=5,
)


def test_defaults():
    s = Settings()
    assert (s.instrument, s.baseline_minimum, s.population, s.relief, s.window, s.min_cell) == ("GAD7", 10, "observed", "response", 7, 11)
    assert Settings(instrument="PCL5").baseline_minimum == 33
    assert s.to_query_params() == [] and s.to_args() == [] and not s.is_filtered()
    assert s.describe_filters() == "All patients"


def test_multi_values_sorted_and_deduplicated():
    a = Settings(route=("IV", "IN", "IV"), site=("S2", "S1"))
    assert a.route == ("IV", "IN") and a.site == ("S1", "S2")  # spec order for enums, text order for sites
    assert a == Settings(route=("IN", "IV"), site=("S1", "S2", "S1")) and hash(a) == hash(Settings(route=("IN", "IV"), site=("S1", "S2")))
    assert Settings(route="IV").route == ("IV",) and Settings(route=None).route == ()


def test_issue_example_url():
    q = parse_qs("route=IV&route=IN&site=S2&instrument=PHQ9&age_band=25-34")
    s = Settings.from_query_params(q)
    assert s.route == ("IV", "IN") and s.site == ("S2",) and s.instrument == "PHQ9" and s.age_band == ("25-34",)
    assert s.to_query_string() == "route=IV&route=IN&site=S2&age_band=25-34&instrument=PHQ9"


def test_url_round_trip():
    pairs = FULL.to_query_params()
    q: dict[str, list[str]] = {}
    for k, v in pairs:
        q.setdefault(k, []).append(v)
    assert Settings.from_query_params(q) == FULL
    assert Settings.from_query_params(parse_qs(FULL.to_query_string())) == FULL
    assert ("treatment_resistant", "yes") in pairs and ("integration", "no") in pairs


def test_flags_round_trip():
    argv = FULL.to_args()
    assert "--age-band" in argv and "--treatment-resistant" in argv and "--min-cell" in argv
    assert from_flags(argv) == FULL
    s = from_flags(["--route", "IV", "--route", "SC", "--treatment-resistant", "no", "--instrument", "pcl5", "--min-baseline", "40"])
    assert s.route == ("IV", "SC") and s.treatment_resistant is False and s.instrument == "PCL5" and s.baseline_minimum == 40


@pytest.mark.parametrize("params,name", [
    ({"route": ["XX"]}, "route"),
    ({"site": ["S 1"]}, "site"),
    ({"diagnosis": ["flu"]}, "diagnosis"),
    ({"sex": ["Q"]}, "sex"),
    ({"age_band": ["20-30"]}, "age_band"),
    ({"from_quarter": "2025Q1"}, "from_quarter"),
    ({"to_quarter": "2025-Q5"}, "to_quarter"),
    ({"from_quarter": "2025-Q3", "to_quarter": "2025-Q1"}, "from_quarter"),
    ({"treatment_resistant": "maybe"}, "treatment_resistant"),
    ({"setting": ["ward"]}, "setting"),
    ({"integration": "2"}, "integration"),
    ({"severity": ["extreme"]}, "severity"),
    ({"instrument": "BDI"}, "instrument"),
    ({"min_baseline": "22"}, "min_baseline"),  # GAD-7 scores end at 21
    ({"min_baseline": "ten"}, "min_baseline"),
    ({"population": "all"}, "population"),
    ({"relief": "half"}, "relief"),
    ({"window": "-1"}, "window"),
    ({"window": "366"}, "window"),
    ({"window": "7.5"}, "window"),
    ({"min_cell": "1001"}, "min_cell"),
    ({"window": ["7", "14"]}, "window"),
])
def test_invalid_values_named(params, name):
    with pytest.raises(SettingsError) as exc:
        Settings.from_query_params(params)
    assert any(p.startswith(f"{name}:") for p in exc.value.problems), exc.value.problems


def test_every_problem_reported_and_flags_named_as_flags():
    with pytest.raises(SettingsError) as exc:
        Settings.from_query_params({"route": ["XX"], "window": "400", "population": "all"})
    assert [p.split(":")[0] for p in exc.value.problems] == ["route", "population", "window"]
    with pytest.raises(SettingsError) as exc:
        from_flags(["--age-band", "20-30", "--min-cell", "x"])
    assert {p.split(":")[0] for p in exc.value.problems} == {"--age-band", "--min-cell"}
    assert "'20-30'" in exc.value.problems[0] or "'20-30'" in exc.value.problems[1]


def test_unknown_parameters():
    assert Settings.from_query_params({"page": "response"}) == Settings()
    with pytest.raises(SettingsError, match="nonsense: unknown parameter"):
        Settings.from_query_params({"nonsense": "1"}, ignore_unknown=False)


def test_direct_construction_validates():
    with pytest.raises(SettingsError, match="window"):
        Settings(window=True)
    with pytest.raises(SettingsError, match="min_cell"):
        Settings(min_cell=-1)
    with pytest.raises(SettingsError, match="treatment_resistant"):
        Settings(treatment_resistant="yes")
    with pytest.raises(Exception):
        FULL.window = 3  # frozen


def test_cohort_params_bind_lists_or_null():
    p = FULL.cohort_params()
    assert p["routes"] == ["IV", "IN"] and p["sites"] == ["S1", "S2"] and p["severities"] == ["moderate", "severe"]
    assert p["instrument"] == "PHQ9" and p["treatment_resistant"] is True and p["integration"] is False
    assert (p["mild_floor"], p["moderate_floor"], p["severe_floor"]) == (5, 10, 15)
    q = Settings(instrument="PCL5").cohort_params()
    assert q["routes"] is None and q["from_quarter"] is None and q["integration"] is None
    assert (q["mild_floor"], q["moderate_floor"], q["severe_floor"]) == (20, 33, 50)
    assert set(p) == set(q)


def test_describe_filters():
    text = FULL.describe_filters()
    assert "IV infusion, Intranasal" in text and "started 2024-Q2 to 2025-Q1" in text and "treatment-resistant" in text
    assert "without integration therapy" in text and "baseline severity (PHQ-9) moderate, severe" in text


def test_replace_revalidates():
    assert Settings().replace(window=10).window == 10
    with pytest.raises(SettingsError):
        Settings().replace(population="everyone")
    assert spec.DEFAULT_WINDOW == Settings().window


def test_repr_names_every_field():
    # the dashboard's caches key on repr(Settings) (dashboard/app/ui.py): every field must be in it
    import dataclasses

    assert all(f.repr for f in dataclasses.fields(Settings))
    base = repr(Settings())
    changed = {"route": ("IV",), "site": ("S1",), "diagnosis": ("MDD",), "sex": ("F",), "age_band": ("25-34",),
               "from_quarter": "2025-Q1", "to_quarter": "2025-Q4", "treatment_resistant": True,
               "setting": ("home",), "integration": False, "severity": ("mild",), "instrument": "PHQ9",
               "min_baseline": 12, "population": "itt", "relief": "mcid", "window": 14, "min_cell": 5,
               "rems_minutes": 90, "scope": ("S1",)}
    assert set(changed) == {f.name for f in dataclasses.fields(Settings)}
    for name, value in changed.items():
        assert repr(Settings(**{name: value})) != base, name


def test_rems_minutes_in_flags_and_url():
    # the esketamine monitoring minimum: flag --rems-minutes, URL rems_minutes, default 120 left out of both
    import argparse

    assert Settings().rems_minutes == 120
    assert Settings().to_query_params() == [] and Settings().to_args() == []
    s = Settings.from_query_params({"rems_minutes": "90"})
    assert s.rems_minutes == 90
    assert s.to_query_params() == [("rems_minutes", "90")]
    assert s.to_args() == ["--rems-minutes", "90"]
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    assert Settings.from_args(parser.parse_args(["--rems-minutes", "150"])).rems_minutes == 150
    with pytest.raises(SettingsError) as exc:
        Settings.from_args(parser.parse_args(["--rems-minutes", "1441"]))
    assert exc.value.problems == ["--rems-minutes: 1441 is not a whole number of minutes from 0 to 1440"]
    with pytest.raises(SettingsError) as exc:
        Settings.from_query_params({"rems_minutes": "two hours"})
    assert exc.value.problems == ["rems_minutes: 'two hours' is not a whole number (digits 0-9 only)"]

# --- issue 12: one rule for every numeric parameter (ASCII digits only) and for repeated keys -------------


@pytest.mark.parametrize("name", ["window", "min_cell", "min_baseline"])
@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "1e999", "nan", "NaN", "٧", "1_4", "7.0", "+7", "0x7",
                                 "", "७", "１４"])
def test_numbers_are_ascii_digits_only(name, raw):
    with pytest.raises(SettingsError) as exc:
        Settings.from_query_params({name: raw})
    assert exc.value.problems == [f"{name}: {raw!r} is not a whole number (digits 0-9 only)"]
    with pytest.raises(SettingsError) as exc:
        from_flags(["--" + name.replace("_", "-") + "=" + raw])  # "=": argparse would read "-inf" as a flag
    assert exc.value.problems == [f"--{name.replace('_', '-')}: {raw!r} is not a whole number (digits 0-9 only)"]


def test_plain_digits_still_parse():
    s = Settings.from_query_params({"window": "14", "min_cell": "0", "min_baseline": "010"})
    assert (s.window, s.min_cell, s.min_baseline) == (14, 0, 10)


@pytest.mark.parametrize("name", ["window", "min_cell", "min_baseline", "instrument", "population", "relief",
                                  "from_quarter", "to_quarter", "treatment_resistant", "integration"])
def test_a_repeated_single_valued_key_is_refused(name):
    with pytest.raises(SettingsError) as exc:
        Settings.from_query_params({name: ["11", "0"]})
    assert exc.value.problems == [f"{name}: given 2 times, expected once; the default was used"]


def test_reversed_quarters_name_the_end_quarter_in_words_on_the_command_line():
    """The flag form of the problem must not name the other setting by its link name (a newcomer read
    "--from-quarter: '2025-Q4' is after to_quarter '2024-Q1'")."""
    with pytest.raises(SettingsError) as exc:
        from_flags(["--from-quarter", "2025-Q4", "--to-quarter", "2024-Q1"])
    assert any("'2025-Q4' is after the end quarter '2024-Q1'" in p for p in exc.value.problems)
    assert not any("to_quarter" in p for p in exc.value.problems)
