"""The integrity statement's fast path (gateway/reports/document.py, `_root_with`): the root of
a tree recomputed from some leaves' own hashes and the stored nodes beside them equals RFC 9162's
root exactly when those leaves are the tree's, for every tree size and choice of leaves, runs
of consecutive leaves (hashed level by level) included; the nodes it reads are the ones
`_nodes_beside` names by index arithmetic, fetched before it runs."""

from __future__ import annotations

import functools
import hashlib
import random

from gateway.reports.document import _nodes_beside, _root_with
from projections.evidence.merkle import MemoryTree, leaf_hash, nodes_read


def test_the_root_with_the_right_leaves_is_the_tree_root_and_a_wrong_one_is_not() -> None:
    rng = random.Random(13)
    for size in [*range(1, 40), 63, 64, 65, 100, 257]:
        tree = MemoryTree()
        hashes = [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]
        for h in hashes:
            tree.append(h)
        chosen = rng.sample(range(size), rng.randint(1, size))
        given = {i: hashes[i] for i in chosen}
        assert _root_with(size, given, tree.read) == tree.root(size), size
        wrong = dict(given)
        wrong[chosen[0]] = leaf_hash(b"forged")
        assert _root_with(size, wrong, tree.read) != tree.root(size), size


def test_runs_of_consecutive_leaves_and_the_nodes_read() -> None:
    rng = random.Random(1302)
    for size in [*range(1, 40), 63, 64, 65, 100, 257, 1000]:
        tree = MemoryTree()
        hashes = [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]
        for h in hashes:
            tree.append(h)
        for _ in range(6):
            # One or two runs, as a case's events often are, and a few strays.
            chosen: set[int] = set()
            for _ in range(rng.randint(1, 2)):
                start = rng.randrange(size)
                chosen.update(range(start, min(size, start + rng.randint(1, size))))
            chosen.update(rng.sample(range(size), min(size, rng.randint(0, 3))))
            given = {i: hashes[i] for i in chosen}
            assert _root_with(size, given, tree.read) == tree.root(size), (size, sorted(chosen))
            read = nodes_read(functools.partial(_root_with, size, given))
            beside = _nodes_beside(size, sorted(given))
            assert sorted(beside) == sorted(read) and len(beside) == len(set(beside))
            for index in rng.sample(sorted(chosen), min(3, len(chosen))):
                wrong = dict(given)
                wrong[index] = leaf_hash(b"forged")
                assert _root_with(size, wrong, tree.read) != tree.root(size), (size, index)
