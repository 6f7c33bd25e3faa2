"""Audit log page (`/audit`, network admins only): who viewed, downloaded, reported or imported what and
when, filtered by person, action and time, with the selection as a CSV download (itself recorded)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import streamlit as st

from dashboard.app import ui
from dashboard.reports import audit

ACTION_LABELS = {"view": "page view", "download": "download", "report": "report", "import": "import",
                 "export": "command-line export", "unreadable": "unreadable line"}

ctx = ui.current_context()
if ctx.person is None or not ctx.person.may_read_audit:  # the page is not listed for them; a guard anyway
    st.error("The audit log is for network administrators.", icon=":material/block:")
    st.stop()

st.title("Audit log")
st.caption(f"Every page view (with its filters), download, report and import, oldest first. Kept in "
           f"{ctx.audit_log}; it survives imports. Times are UTC.")
try:
    log = audit.read_log(ctx.audit_log)
except audit.AuditError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

people = sorted(set(audit.person_label(log)))
c1, c2, c3 = st.columns([2, 2, 2])
chosen_people = c1.multiselect("Person", people, key="_ko_audit_people", placeholder="Everyone")
chosen_actions = c2.multiselect("Action", [a for a in ACTION_LABELS if a in set(log["action"])],
                                format_func=lambda a: ACTION_LABELS.get(a, a), key="_ko_audit_actions",
                                placeholder="Every action")
today = datetime.now(timezone.utc).date()
first = log["time"].min().date() if log["time"].notna().any() else today
dates = c3.date_input("Between (UTC days)", value=(first, today), key="_ko_audit_dates")
start = end = None
if isinstance(dates, (tuple, list)) and len(dates) == 2:
    start = datetime.combine(dates[0], time(), tzinfo=timezone.utc)
    end = datetime.combine(dates[1], time(), tzinfo=timezone.utc) + timedelta(days=1)
shown = audit.filter_log(log, people=chosen_people, actions=chosen_actions, start=start, end=end)

st.markdown(f"**{len(shown):,} of {len(log):,} entries**")
table = shown.assign(action=[ACTION_LABELS.get(a, a) for a in shown["action"]])
ui.render_table(
    table,
    {"time": "Time (UTC)", "email": "E-mail", "subject": "Account", "role": "Role", "sites": "Sites",
     "page": "Page", "action": "Action", "files": "Files", "query": "Filters (link)", "import_id": "Import"},
    height=480,
)
st.download_button(
    "Download these entries (audit.csv)",
    data=ui.audited(ctx, ["audit.csv"], lambda: audit.log_csv_bytes(shown)),
    file_name="audit.csv", mime="text/csv", on_click="ignore", key="_ko_dl_audit", icon=":material/download:",
)
