"""Stored topics stay readable: where each stored class used to live, and where it lives now.

Every stored event names its class by topic, `module:QualName` (the library's `get_topic`): in its
row, in the associated data its ciphertext is authenticated with, and in its Merkle leaf. An
aggregate's first event also holds the aggregate's topic, and a snapshot holds it too. Rows are
never rewritten, so every topic once stored must resolve for ever.

Moving or renaming a stored class, or the domain module that holds it, therefore takes one line
here: `moved("old.module", new_module)` or `moved("old.module:OldName", NewClass)` (the library's
`register_topic`, which also resolves the nested event classes under a moved module or
aggregate). Code that selects stored events by topic must then select by `topics_of(cls)`, which
includes the old topics: the store keeps both.

Imported by `domain.application`, so registered before anything is read. Proven by
`tests/architecture/test_stored_topics.py`: every topic the store has written is pinned there;
a store written by the main before issue 12 (`tests/fixtures/store_v1/`) opens, reads and
verifies; and a copy of the tree with `domain/case.py` moved reads it only with the line here.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from eventsourcing.utils import get_topic, register_topic

# Old topic (a module path, or `module:QualName`) -> the module or class it names now.
MOVED: Final[dict[str, ModuleType | type]] = {}


def moved(old_topic: str, now: ModuleType | type) -> None:
    """Stored events that name `old_topic` resolve to `now` from here on."""
    register_topic(old_topic, now)
    MOVED[old_topic] = now


def topics_of(*classes: type) -> tuple[str, ...]:
    """Every topic each class has been stored under: its own, then the old ones named here."""
    found: list[str] = []
    for cls in classes:
        found.append(get_topic(cls))
        for old, now in MOVED.items():
            if now is cls:
                found.append(old)
            elif isinstance(now, ModuleType) and cls.__module__ == now.__name__:
                found.append(f"{old}:{cls.__qualname__}")
            elif (
                isinstance(now, type)
                and cls.__module__ == now.__module__
                and cls.__qualname__.startswith(f"{now.__qualname__}.")
            ):
                found.append(f"{old}{cls.__qualname__.removeprefix(now.__qualname__)}")
    return tuple(dict.fromkeys(found))


# --- moved classes and modules (none yet: every topic stored so far is where it was written) ---
