"""The integrity statement's fast path (gateway/reports/document.py, `_root_with`): the root of
a tree recomputed from some leaves' own hashes and the stored nodes beside them equals RFC 9162's
root exactly when those leaves are the tree's, for every tree size and choice of leaves."""

from __future__ import annotations

import hashlib
import random

from gateway.reports.document import _root_with
from projections.evidence.merkle import MemoryTree, leaf_hash


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
