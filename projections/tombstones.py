"""Tombstones in the read models (issue 19): what a view keeps of a stream once it is erased.

When a view folds a `DataKeyDestroyed` fact, it deletes every row of the erased stream (the
ledger's, the reports', the roster's, the deadline duties'...) and writes one tombstone in a
table of its own (`<view>_erased`): the stream id, what it was (`scope`), the rule and its
basis, the day it fell due, the instant and the role that applied it; nothing of its content,
no blind index, so a lookup no longer finds it. A later event of the stream that was still
readable (stored in the instant before its key went) finds the tombstone and is dropped, rather
than stopping the follower. A rebuild from 0 ends in the same rows: the stream's own events are
unreadable then (`domain.tombstones`), the fact is not.

Proven by tests/retention/test_tombstones.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from domain.retention import DataKeyDestroyed
from domain.tombstones import tombstone_of
from projections.follower import Db

TOMBSTONE_COLUMNS: Final = (
    "stream_id",
    "scope",
    "rule",
    "basis",
    "due_on",
    "erased_at",
    "by_role",
)
_CHUNK: Final = 400


def tombstone_ddl(table: str) -> str:
    """The `CREATE TABLE` of a view's tombstones (`Db` syntax)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {{{table}}} (stream_id TEXT PRIMARY KEY, "
        "scope TEXT NOT NULL, rule TEXT NOT NULL, basis TEXT NOT NULL, due_on TEXT, "
        "erased_at TEXT NOT NULL, by_role TEXT NOT NULL)"
    )


def bury(db: Db, table: str, facts: Sequence[DataKeyDestroyed]) -> None:
    """Write the tombstones of `facts` (a fact folded twice writes the same row)."""
    rows = [tombstone_of(f) for f in facts]
    db.insert(
        table,
        TOMBSTONE_COLUMNS,
        [[r[c] for c in TOMBSTONE_COLUMNS] for r in rows],
        key=("stream_id",),
    )


def erased_among(db: Db, table: str, stream_ids: Iterable[str]) -> set[str]:
    """Which of `stream_ids` have a tombstone in `table`."""
    wanted = sorted(set(stream_ids))
    found: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        rows = db.execute(
            f"SELECT stream_id FROM {{{table}}} WHERE stream_id IN ({db.placeholders(len(chunk))})",
            chunk,
        )
        found.update(str(r["stream_id"]) for r in rows)
    return found


def delete_rows(db: Db, table: str, column: str, ids: Iterable[str]) -> None:
    """Delete the rows of `table` whose `column` is one of `ids`."""
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        db.execute(
            f"DELETE FROM {{{table}}} WHERE {column} IN ({db.placeholders(len(chunk))})", chunk
        )


def erases(events: Sequence[Any]) -> bool:
    """Whether a batch holds an erasure (`View.erases`: its deleted rows are zeroed)."""
    return any(isinstance(e, DataKeyDestroyed) for e in events)


def scoped(facts: Sequence[DataKeyDestroyed], scope: str) -> list[str]:
    """The stream ids of the facts that erased a stream of `scope` (`KeyScope` value)."""
    return [str(f.stream_id) for f in facts if f.scope == scope]
