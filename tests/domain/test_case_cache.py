"""The case cache's bounds: size, age, one holder at a time (domain/case_cache.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from uuid import UUID

import pytest

from domain.case_cache import CaseCache


@dataclass
class File:
    version: int = 1
    id: UUID = field(default_factory=uuid.uuid4)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_kept_file_is_taken_out_once() -> None:
    cache: CaseCache[File] = CaseCache(size=4)
    kept = File()
    cache.keep(kept)
    assert cache.take(kept.id) is kept
    # Out of the cache while a command holds it: nobody else gets the same object.
    assert cache.take(kept.id) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_the_least_recently_kept_go_first() -> None:
    cache: CaseCache[File] = CaseCache(size=3)
    files = [File() for _ in range(4)]
    for f in files[:3]:
        cache.keep(f)
    cache.keep(files[0])  # changed again: now the most recent
    cache.keep(files[3])
    assert len(cache) == 3
    assert cache.take(files[1].id) is None
    assert [cache.take(f.id) for f in (files[0], files[2], files[3])] == [
        files[0],
        files[2],
        files[3],
    ]


def test_a_file_past_its_age_is_never_used_and_is_dropped() -> None:
    clock = Clock()
    cache: CaseCache[File] = CaseCache(size=8, max_age=60, clock=clock)
    old, young = File(), File()
    cache.keep(old)
    clock.now += 50
    cache.keep(young)
    clock.now += 11
    assert cache.take(old.id) is None
    assert len(cache) == 1  # the old one is gone, not only skipped
    clock.now += 50
    cache.take(uuid.uuid4())  # any command drops what is past its age
    assert len(cache) == 0
    assert cache.take(young.id) is None


def test_size_zero_keeps_nothing() -> None:
    cache: CaseCache[File] = CaseCache(size=0)
    kept = File()
    cache.keep(kept)
    assert len(cache) == 0
    assert cache.take(kept.id) is None


@pytest.mark.parametrize(("size", "max_age"), [(-1, 60.0), (4, 0.0), (4, -1.0)])
def test_bounds_that_make_no_sense_are_refused(size: int, max_age: float) -> None:
    with pytest.raises(ValueError, match="case cache"):
        CaseCache(size=size, max_age=max_age)


def test_clear_and_forget() -> None:
    cache: CaseCache[File] = CaseCache(size=4)
    a, b = File(), File()
    cache.keep(a)
    cache.keep(b)
    cache.forget(a.id)
    assert cache.take(a.id) is None
    cache.clear()
    assert len(cache) == 0
