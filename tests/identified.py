"""Build a clinic's identified records (the generic layout) from an anonymized export, for the tests.

Each patient gets a record number, a name, a birth date that puts them in their age band on day 0, contact
details and notes; day 0 becomes a calendar date inside the patient's start quarter, every day a date and
every questionnaire a date-time that places it before or after the session's dose exactly as its
`hours_post_dose` says. `identify_export` returns every identifying value it wrote, so a test can search
an anonymized output for each of them. Also used once to write sample_data/example_records/.
`edited_records` copies those example records with chosen cells replaced (identifying values where codes
or numbers belong, for the tests of what a refusal may quote).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

FIRST = ["Marguerite", "Oluwaseun", "Bartholomew", "Ingeborg", "Thaddeus", "Wilhelmina", "Cornelius", "Zbigniew",
         "Philippa", "Ezekiel", "Rosalind", "Leopoldo", "Henrietta", "Ignatius", "Clementine", "Sigourney"]
LAST = ["Okonkwo", "Lindqvist", "Featherstone", "Kowalczyk", "Abernathy", "Rasmussen", "Villanueva", "Thistlewood",
        "Brannigan", "Quigley", "Montgomery", "Szymanski", "Whitlock", "Yamamoto", "Fitzgerald", "Zuckerman"]
STREETS = ["Elm Street", "Harbour Road", "Juniper Lane", "Orchard Way", "Wexford Avenue"]
BAND_AGES = {"18-24": (18, 24), "25-34": (25, 34), "35-44": (35, 44), "45-54": (45, 54), "55-64": (55, 64),
             "65-74": (65, 74), "75+": (75, 89)}


@dataclass
class Identities:
    """Every identifying value written into the records, by kind."""

    record_numbers: set[str] = field(default_factory=set)
    encounter_numbers: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    contacts: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)
    record_of: dict[str, str] = field(default_factory=dict)  # export patient_id -> record number
    encounter_of: dict[str, str] = field(default_factory=dict)  # export session_id -> encounter number

    def all(self) -> set[str]:
        return (self.record_numbers | self.encounter_numbers | self.names | self.dates | self.contacts
                | self.notes)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def identify_export(export_dir: Path, out_dir: Path, *, seed: int = 1) -> Identities:
    """Write the generic layout's four CSV files in out_dir for the export in export_dir."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = Identities()
    patients = _read(export_dir / "patients.csv")
    sessions = _read(export_dir / "sessions.csv")
    assessments = _read(export_dir / "assessments.csv")
    events = _read(export_dir / "adverse_events.csv") if (export_dir / "adverse_events.csv").exists() else []

    dosed = {s["patient_id"] for s in sessions}
    first_day: dict[str, int] = {}  # the export day that is calendar day 0: 0, or a never-dosed patient's first
    for a in assessments:
        if a["patient_id"] not in dosed:
            first_day[a["patient_id"]] = min(int(a["day"]), first_day.get(a["patient_id"], 10**6))
    calendar: dict[str, date] = {}  # patient -> date of export day 0
    record: dict[str, str] = {}
    rows = []
    for n, p in enumerate(patients):
        year, q = int(p["start_quarter"][:4]), int(p["start_quarter"][-1])
        start = date(year, 3 * q - 2, 1) + timedelta(days=rng.randint(0, 60))
        calendar[p["patient_id"]] = start - timedelta(days=first_day.get(p["patient_id"], 0))
        lo, hi = BAND_AGES[p["age_band"]]
        birth = _years_before(start, rng.randint(lo, hi)) - timedelta(days=rng.randint(0, 360))
        rec = f"MRN-{100000 + n * 7:06d}"
        record[p["patient_id"]] = rec
        first, last = FIRST[n % len(FIRST)], LAST[(n * 5 + 3) % len(LAST)]
        email = f"{first.lower()}.{last.lower()}{n}@example.org"
        phone = f"+1 555 {200 + n % 700:03d} {1000 + n:04d}"
        address = f"{10 + n} {STREETS[n % len(STREETS)]}, Springfield"
        note = f"Referred by Dr {LAST[(n + 7) % len(LAST)]}; prefers afternoon visits ({n})"
        ids.record_numbers.add(rec)
        ids.names |= {first, last}
        ids.dates.add(birth.isoformat())
        ids.contacts |= {email, phone, address}
        ids.notes.add(note)
        rows.append({"record_number": rec, "first_name": first, "last_name": last, "birth_date": birth.isoformat(),
                     "sex": p["sex"], "site": p["site"], "diagnosis": p["primary_diagnosis"],
                     "treatment_resistant": p["treatment_resistant"],
                     "prior_failed_treatments": p["prior_failed_treatments"], "hypertension": p["hypertension"],
                     "email": email, "phone": phone, "address": address, "notes": note})
    _write(out_dir / "patients.csv", list(rows[0]), rows)

    session_columns = ["route", "drug", "setting", "phase", "dose_mg", "integration_therapy", "sbp_pre", "sbp_peak",
                       "dbp_pre", "dbp_peak", "heart_rate_peak", "cadss", "monitoring_minutes", "completed"]
    started: dict[tuple[str, int], datetime] = {}
    encounter: dict[str, str] = {}
    rows = []
    for n, s in enumerate(sessions):
        d = calendar[s["patient_id"]] + timedelta(days=int(s["day"]))
        at = datetime(d.year, d.month, d.day, 9, 0) + timedelta(minutes=rng.randint(0, 90))
        started[(s["patient_id"], int(s["day"]))] = at
        enc = f"ENC-{5000000 + n * 3}"
        encounter[s["session_id"]] = enc
        ids.encounter_numbers.add(enc)
        ids.dates |= {d.isoformat(), at.strftime("%Y-%m-%d %H:%M")}
        note = f"Session went smoothly, chaperone present ({n})" if n % 3 == 0 else ""
        if note:
            ids.notes.add(note)
        rows.append({"encounter_number": enc, "record_number": record[s["patient_id"]],
                     "started_at": at.strftime("%Y-%m-%d %H:%M"), **{c: s.get(c, "") for c in session_columns},
                     "notes": note})
    _write(out_dir / "sessions.csv", ["encounter_number", "record_number", "started_at", *session_columns, "notes"],
           rows)

    rows = []
    for a in assessments:
        day = int(a["day"])
        session = started.get((a["patient_id"], day))
        if a["hours_post_dose"]:
            at = session + timedelta(hours=float(a["hours_post_dose"]))
        elif session is not None:
            at = session - timedelta(minutes=30)
        else:
            d = calendar[a["patient_id"]] + timedelta(days=day)
            at = datetime(d.year, d.month, d.day, 14, 0)
        ids.dates |= {at.date().isoformat(), at.strftime("%Y-%m-%d %H:%M")}
        rows.append({"record_number": record[a["patient_id"]], "taken_at": at.strftime("%Y-%m-%d %H:%M"),
                     "instrument": a["instrument"], "score": a["score"]})
    _write(out_dir / "questionnaires.csv", ["record_number", "taken_at", "instrument", "score"], rows)

    rows = []
    for n, e in enumerate(events):
        note = f"Resolved with rest and water, nurse informed ({n})" if n % 2 == 0 else ""
        if note:
            ids.notes.add(note)
        rows.append({"encounter_number": encounter[e["session_id"]], "event": e["event"],
                     "severity": e["severity"], "intervention": e["intervention"], "notes": note})
    _write(out_dir / "adverse_events.csv", ["encounter_number", "event", "severity", "intervention", "notes"], rows)
    ids.record_of, ids.encounter_of = record, encounter
    return ids


EXAMPLE_RECORDS = Path(__file__).resolve().parents[1] / "sample_data" / "example_records"
# Identifying values of the example records put where a code or a number belongs, as a clinic's spreadsheet
# can hold them: (file, line, column) -> value. Line 2 is Marguerite Kowalczyk, line 3 Oluwaseun Brannigan,
# line 4 Bartholomew Yamamoto.
IDENTIFYING_EDITS = {
    ("patients.csv", 2, "site"): "marguerite.kowalczyk0@example.org",  # her e-mail address
    ("patients.csv", 3, "prior_failed_treatments"): "+1 555 201 1001",  # his phone number
    ("patients.csv", 4, "sex"): "Bartholomew Yamamoto",  # his full name
    ("adverse_events.csv", 2, "event"): "Patient Marguerite felt faint",  # a sentence
}


def edited_records(out_dir: Path, edits: dict[tuple[str, int, str], str], source: Path = EXAMPLE_RECORDS) -> Path:
    """A copy of the example records (the generic layout) in out_dir with cells replaced:
    {(file, line, column): value}, line 1 being the header."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        for (file, line, column), value in edits.items():
            if file == path.name:
                rows[line - 1][rows[0].index(column)] = value
        with (out_dir / path.name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return out_dir
