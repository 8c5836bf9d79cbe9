"""--resume's checks of the files it reads (study.engine.preflight), on real files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import optuna

from study.engine.preflight import _check_optuna

#: a writer that spills a big transaction into the database file (cache of one page) and is
#: killed before it commits: what a driver killed by SIGKILL mid-write leaves behind
KILLED_WRITER = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size = 1")
con.execute("BEGIN")
for i in range(3000):
    con.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, ?, ?)",
                (f"k{i}", "x" * 200))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _attributes(db) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT count(*) FROM study_user_attributes").fetchone()[0]


def test_a_journal_left_by_a_killed_writer_is_rolled_back_not_refused(tmp_path):
    """Found in the suite: a driver killed inside an Optuna write left optuna.db-journal, and
    --resume refused the study ("not a readable Optuna database ... attempt to write a readonly
    database ... start the study anew with --overwrite"): a read-only connection cannot roll a
    hot journal back. Now the check lets SQLite undo the killed transaction, as Optuna's own
    open would, and the study's committed records are all there."""
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="decide", storage=f"sqlite:///{db}")
    study.set_user_attr("study_id", "abc")
    before = _attributes(db)
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    journal = db.with_name("optuna.db-journal")
    assert journal.exists() and journal.stat().st_size > 0  # the hot journal
    _check_optuna(db, "decide", "abc")  # no error
    assert not journal.exists() or journal.stat().st_size == 0
    assert _attributes(db) == before  # the killed transaction undone, the committed one kept


def test_a_corrupt_database_beside_a_journal_is_still_one_clear_line(tmp_path):
    """The journal's roll-back opens the database read-write: a database that is not one
    (here with a journal beside it) is still refused in one line, not a traceback."""
    import pytest

    from study.core.errors import UserError

    db = tmp_path / "optuna.db"
    db.write_bytes(b"not a database" * 100)
    db.with_name("optuna.db-journal").write_bytes(b"x" * 512)
    with pytest.raises(UserError, match="not a readable Optuna database of study 'decide'"):
        _check_optuna(db, "decide", None)
