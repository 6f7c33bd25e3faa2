"""The built-in sample database: built on first use, reused, rebuilt when the code that built it changes."""

from __future__ import annotations

import duckdb

from dashboard.data import builtin, store


def test_built_once_then_reused_then_rebuilt_when_stale(tmp_path, monkeypatch):
    db = tmp_path / "sample.duckdb"
    messages: list[str] = []
    assert builtin.ensure_sample_database(db, patients=40, seed=3, progress=messages.append) == db
    assert messages == [f"Building the built-in sample database (40 patients, seed 3) at {db} …"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM patients").fetchone() == (40,)
        assert con.execute("SELECT source FROM import_history").fetchone() == (builtin.sample_label(40, 3),)
    inode = db.stat().st_ino

    messages.clear()
    builtin.ensure_sample_database(db, patients=40, seed=3, progress=messages.append)
    assert messages == [] and db.stat().st_ino == inode  # up to date: not rebuilt

    # another build of the code (here: a different label) makes the database stale: it is rebuilt in place
    monkeypatch.setattr(builtin, "sample_label", lambda patients, seed: "built-in sample (changed code)")
    builtin.ensure_sample_database(db, patients=40, seed=3, progress=messages.append)
    assert messages == [f"Rebuilding the built-in sample database (40 patients, seed 3) at {db} …"]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT source FROM import_history ORDER BY import_id DESC LIMIT 1").fetchone() == (
            "built-in sample (changed code)",)


def test_an_unreadable_file_is_replaced(tmp_path):
    db = tmp_path / "sample.duckdb"
    db.write_bytes(b"not a database")
    builtin.ensure_sample_database(db, patients=30, seed=1)
    con = store.open_database(db)
    try:
        assert con.execute("SELECT count(*) FROM patients").fetchone() == (30,)
    finally:
        con.close()


def test_label_depends_on_size_and_seed():
    assert builtin.sample_label(40, 3) != builtin.sample_label(41, 3) != builtin.sample_label(40, 4)
    assert builtin.sample_label(40, 3) == builtin.sample_label(40, 3)
