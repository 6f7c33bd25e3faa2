"""Who may see what: a signed-in person's role and sites, and the scope every cohort is computed within.

The contract is docs/access.md (from the shared spec "Sign-in, per-site access and the audit log"):

- Roles: `viewer` (their sites only), `site_director` (their sites only; may download), `network_admin`
  (every site, the audit log, imports).
- A person's role and sites come from their identity-provider claims `role` and `sites`; when the provider
  sends no `role` claim, from an access file (CSV `email,role,sites`) that maps e-mail addresses to them.
- The scope is enforced in the core: `apply_scope(settings, person)` sets `Settings.scope`, which every
  query binds (`Settings.cohort_params`), so pages, option lists, CSVs and reports obey it by construction;
  it also keeps the minimum cell of anyone but a network admin at or above the default.

Questions other parts ask (no Streamlit here, so the command line and tests use the same answers):

- `person.sees_all_sites` — may this person see every site (by name and number)?
- `person.named_sites` — the sites this person may see by name (None: every site).
- `person.may_download`, `person.may_import`, `person.may_read_audit` — role checks for pages and buttons.
"""

from __future__ import annotations

import csv
import getpass
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dashboard.analysis.settings import Settings
from dashboard.data import spec

VIEWER = "viewer"
SITE_DIRECTOR = "site_director"
NETWORK_ADMIN = "network_admin"
ROLES = (VIEWER, SITE_DIRECTOR, NETWORK_ADMIN)
ROLE_LABELS = {VIEWER: "viewer", SITE_DIRECTOR: "site director", NETWORK_ADMIN: "network administrator"}
ACCESS_COLUMNS = ("email", "role", "sites")


class AccessFileError(ValueError):
    """The access file cannot be used. `problems` name the file, line, column and value of each fault."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Person:
    """Someone using the dashboard or the command line.

    `role` is one of ROLES or None (no role granted); `sites` the site codes granted (sorted; ignored for a
    network admin, who sees every site). `source` says where role and sites came from: "claims",
    "access file", "local" (no sign-in: the person at this machine) or "none"."""

    subject: str
    email: str
    role: str | None
    sites: tuple[str, ...]
    source: str

    @property
    def sees_all_sites(self) -> bool:
        """May this person see every site by name and number (the network benchmark's full view)?"""
        return self.role == NETWORK_ADMIN

    @property
    def named_sites(self) -> tuple[str, ...] | None:
        """The sites this person may see by name; None means every site."""
        return None if self.sees_all_sites else self.sites

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The value for `Settings.scope`: None (every site) or the granted sites (empty: none)."""
        if self.role not in ROLES:
            return ()
        return self.named_sites

    @property
    def has_access(self) -> bool:
        """A known role and, unless a network admin, at least one site."""
        return self.role in ROLES and (self.sees_all_sites or bool(self.sites))

    @property
    def may_download(self) -> bool:
        return self.role in (SITE_DIRECTOR, NETWORK_ADMIN)

    @property
    def min_cell_floor(self) -> int:
        """The smallest minimum cell this person's views may use: any (0 turns hiding off) for a network admin,
        who holds every site's data (and for the local person, who holds the database file); the default
        (spec.DEFAULT_MIN_CELL) for everyone else, so a viewer or site director of a shared dashboard never
        sees a small count by changing a setting or a link (docs/choices.md)."""
        return 0 if self.sees_all_sites else spec.DEFAULT_MIN_CELL

    @property
    def may_import(self) -> bool:
        return self.role == NETWORK_ADMIN

    @property
    def may_read_audit(self) -> bool:
        return self.role == NETWORK_ADMIN

    def why_no_access(self) -> str:
        """Plain words for a person without access ('' when they have it)."""
        if self.role is None:
            return "Your account has no role in this dashboard."
        if self.role not in ROLES:
            return f"Your account's role {self.role!r} is not one this dashboard knows ({', '.join(ROLES)})."
        if not self.has_access:
            return "Your account has no sites assigned."
        return ""

    def describe(self) -> str:
        """'ana@clinic.org, site director of S1, S2' (for the sidebar and messages)."""
        who = self.email or self.subject
        if self.sees_all_sites:
            return f"{who}, network administrator (every site)"
        if self.role in ROLES:
            return f"{who}, {ROLE_LABELS[self.role]} of {', '.join(self.sites) or 'no site'}"
        return f"{who} (no role)"


def apply_scope(settings: Settings, person: Person) -> Settings:
    """`settings` computed within what `person` may see: their sites (every site for a network admin), and a
    minimum cell of at least `person.min_cell_floor` (a lower one is raised to it)."""
    return settings.replace(scope=person.scope, min_cell=max(settings.min_cell, person.min_cell_floor))


def local_person() -> Person:
    """No sign-in configured: the one person at this machine sees everything (they hold the database file)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (containers): still a local person
        user = "local"
    return Person(subject=f"local:{user}", email="", role=NETWORK_ADMIN, sites=(), source="local")


def parse_sites(raw: Any) -> tuple[str, ...]:
    """A `sites` claim or cell: a list of codes, or one string separated by commas, semicolons or spaces."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else list(raw)
    codes: list[str] = []
    for item in items:
        codes += [c for c in re.split(r"[\s,;]+", str(item)) if c]
    return tuple(sorted(dict.fromkeys(codes)))


def _clean_role(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) and len(list(raw)) == 1:  # a one-element list claim
        raw = list(raw)[0]
    text = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
    return text or None


def person_from_claims(claims: Mapping[str, Any], access: Mapping[str, tuple[str, tuple[str, ...]]] | None = None) -> Person:
    """The person an identity provider signed in: role and sites from the `role` and `sites` claims, or,
    when the provider sends no `role` claim, from the access file's row for their `email` (lower-cased).

    Site codes that are not valid codes are dropped (they can match no patient anyway)."""
    subject = str(claims.get("sub") or "")
    email = str(claims.get("email") or "").strip()
    if claims.get("role") not in (None, "", []):
        role = _clean_role(claims.get("role"))
        sites = parse_sites(claims.get("sites"))
        source = "claims"
    elif access is not None and email.lower() in access:
        role, sites = access[email.lower()]
        source = "access file"
    else:
        role, sites, source = None, (), "none"
    sites = tuple(s for s in sites if spec.SITE_PATTERN.match(s))
    return Person(subject=subject, email=email, role=role, sites=sites, source=source)


def load_access_file(path: str | Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Read an access file: CSV with the header `email,role,sites`; sites separated by spaces or semicolons.

    Returns {lower-cased email: (role, sites)}. Raises AccessFileError naming the file, line, column and
    value of every fault at once (a missing file, a missing column, an unknown role, a bad site code, an
    address listed twice)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AccessFileError([f"{path}: the access file does not exist; create it (columns email,role,sites) "
                               "or start without --access-file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessFileError([f"{path}: the access file could not be read ({exc})"]) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise AccessFileError([f"{path}, line 1: the access file is empty; its first line must be email,role,sites"])
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ACCESS_COLUMNS if c not in header]
    if missing:
        raise AccessFileError([f"{path}, line 1: column {c!r} is missing; the header must be email,role,sites"
                               for c in missing])
    at = {c: header.index(c) for c in ACCESS_COLUMNS}
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    problems: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cell = {c: (row[i].strip() if i < len(row) else "") for c, i in at.items()}
        where = f"{path}, line {number}"
        email = cell["email"].lower()
        if "@" not in email:
            problems.append(f"{where}, column email: {cell['email']!r} is not an e-mail address")
        role = _clean_role(cell["role"])
        if role not in ROLES:
            problems.append(f"{where}, column role: {cell['role']!r} is not a role; use one of {', '.join(ROLES)}")
        sites = parse_sites(cell["sites"])
        for site in sites:
            if not spec.SITE_PATTERN.match(site):
                problems.append(f"{where}, column sites: {site!r} is not a site code (1–32 letters, digits, '-' or '_')")
        if role != NETWORK_ADMIN and not sites:
            problems.append(f"{where}, column sites: empty; a {role or 'person'} needs at least one site")
        if email in out:
            problems.append(f"{where}, column email: {cell['email']!r} is listed twice; keep one line per person")
        out[email] = (role or "", sites)
    if problems:
        raise AccessFileError(problems)
    return out
