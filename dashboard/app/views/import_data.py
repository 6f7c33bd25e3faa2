"""Import page (`/import`): upload a ready export, or a clinic's identified records with a mapping (files
or a zip); see every problem in a table (downloadable); import only when the upload is clean. The import is
`ketamine-outcomes import`'s own (a new database file swapped in), so the running dashboard switches to the
new data on the next run, as after a command-line import. Only readers for whom `ui.may_import()` holds see
this page (main.py leaves it out of the navigation otherwise, and the page checks again)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.app import ui
from dashboard.data import spec, uploads
from dashboard.data.ingest import ImportRefused
from dashboard.reports import audit

CHECK_KEY = "_ko_import_check"
DONE_KEY = "_ko_import_done"
KIND_LABELS = {
    "records": "Clinic records with names, record numbers and dates (anonymized here first)",
    "export": "A ready, anonymized export (patients, sessions, assessments, adverse events)",
}

ctx = ui.current_context()
st.title("Import")
if not ui.may_import():
    st.error("Only network administrators can import data.", icon=":material/lock:")
    st.stop()

st.markdown(
    "Replace the data this dashboard shows. Upload the four tables as separate files or as one zip. "
    "Clinic records are anonymized on this server before anything is imported: record numbers become "
    "pseudonyms, dates become days since the first session, birth dates age bands; names, contact details "
    "and notes are dropped. Nothing is imported until every problem is fixed."
)
done = st.session_state.pop(DONE_KEY, None)
if done:
    st.success(done, icon=":material/check_circle:")

kind = st.radio("What are you uploading?", list(KIND_LABELS), format_func=KIND_LABELS.get, key="import_kind")
if kind == "records":
    st.caption("Records in the generic layout need no mapping (see the README). For another layout, add your "
               "mapping file (.toml; `ketamine-outcomes anonymize --init` writes one) to the upload. Pseudonyms "
               "use the clinic's key on this server, so re-imports line up.")
files = st.file_uploader("Files or a zip", type=["csv", "parquet", "xlsx", "toml", "zip"], accept_multiple_files=True,
                         key="import_files")

if st.button("Check the files", type="primary", disabled=not files):
    previous = st.session_state.pop(CHECK_KEY, None)
    if previous is not None:
        previous.discard()
    with st.status("Checking the files…", expanded=True) as status:
        check = uploads.check_upload([(f.name, f.getvalue()) for f in files], kind=kind,
                                     key_path=ui.import_key_path(ctx.db_path), progress=status.write)
        n = len(check.problems)
        status.update(label="Checked: no problems" if check.clean else f"Checked: {spec.counted(n, 'problem')}",
                      state="complete" if check.clean else "error", expanded=False)
    st.session_state[CHECK_KEY] = check

check: uploads.UploadCheck | None = st.session_state.get(CHECK_KEY)
if check is not None:
    if check.key_created:
        st.info(f"A new pseudonym key was created at {check.key_created}. Keep it: the same key gives the same "
                "pseudonyms next time.", icon=":material/key:")
    if check.problems:
        n = len(check.problems)
        st.error(f"**{spec.counted(n, 'problem')} found: nothing was imported.** Fix them in your files "
                 "and check again.", icon=":material/error:")
        table = uploads.problems_frame(check.problems)
        # a problem of a whole file has no line: an empty cell, not the grid's "None"
        table["line"] = ["" if pd.isna(v) else f"{int(v):,}" for v in table["line"]]
        st.dataframe(table, hide_index=True, width="stretch", key="import_problems")
        st.download_button("Download the problems (CSV)", data=uploads.problems_csv_bytes(check.problems),
                           file_name="import-problems.csv", mime="text/csv", on_click="ignore")
    else:
        st.success("**No problems found.** The data can be imported.", icon=":material/check_circle:")
        with st.expander("What was done"):
            st.text(check.report)
        if st.button("Import into the dashboard", type="primary"):
            try:  # an import that could not be recorded does not happen (access.md)
                audit.check_writable(ctx.audit_log)
            except audit.AuditError as exc:
                st.error(f"**Nothing was imported:** {exc}")
                st.stop()
            with st.status("Importing…", expanded=True) as status:
                try:
                    summary = uploads.import_checked(check, ctx.db_path, source_label=f"upload: {', '.join(check.files)}",
                                                     progress=status.write)
                except ImportRefused as exc:
                    status.update(label="Import failed", state="error")
                    st.error(exc.report())
                    st.stop()
            try:
                audit.record(ctx.audit_log, audit.make_entry(person=ctx.person, action="import", page=ctx.page,
                                                             files=list(check.files), import_id=summary.import_id))
            except audit.AuditError as exc:
                st.error(f"The import was made, but could not be recorded in the audit log: {exc}")
            check.discard()
            st.session_state.pop(CHECK_KEY, None)
            st.session_state[DONE_KEY] = "Imported. The dashboard now shows the new data. " + summary.describe()
            st.rerun()
