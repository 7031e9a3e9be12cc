"""Merkle tree math of RFC 9162 §2.1 (the tree of RFC 6962): hashes, incremental append, roots,
inclusion and consistency proofs, their verification, and locating where two trees first
differ. No I/O: a stored tree is read through a `NodeReader`.

Hashes (SHA-256): leaf = H(0x00 || data), node = H(0x01 || left || right), empty tree = H("").

Node addressing: `(level, index)` is the perfect subtree of `2**level` leaves that starts at leaf
`index * 2**level`; level 0 holds the leaf hashes. Every proof of RFC 9162 is made of hashes of
the subtrees its recursion visits; those are either such perfect nodes or a right edge built
from a few of them (`subtree_hash`), so storing every perfect node lets proofs be made for any
past tree size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]
"""read(level, index) -> the hash of that perfect subtree; raises LookupError if unknown."""

NodeId = tuple[int, int]


class ProofError(ValueError):
    """A proof was asked for with arguments that have none (an index beyond the tree...), or
    leads nowhere; `reason` is the code of docs/specs/merkle.md where one applies."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """RFC 9162's k: the largest power of two smaller than n (n >= 2)."""
    if n < 2:
        raise ValueError(f"no split point for a tree of {n} leaves")
    return 1 << ((n - 1).bit_length() - 1)


# --- building -----------------------------------------------------------------------------------


class Frontier:
    """The compact range [0, size): the roots of the perfect subtrees a tree of `size` leaves
    is made of, largest first (one per set bit of `size`, so at most 64).

    Appending a leaf merges it with as many frontier roots as it completes: O(log n) hashes in
    the worst case, one on average. The new perfect nodes it creates are exactly the nodes a
    stored tree needs to gain.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} frontier roots")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def load(cls, size: int, read: NodeReader) -> Frontier:
        return cls(size, [read(level, index) for level, index in frontier_nodes(size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> Frontier:
        return Frontier(self._size, self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the perfect nodes it created as (level, index, hash), the
        leaf itself first."""
        index = self._size
        created = [(0, index, leaf)]
        value, level = leaf, 0
        while index & 1:
            value = node_hash(self._hashes.pop(), value)
            level += 1
            index >>= 1
            created.append((level, index, value))
        self._hashes.append(value)
        self._size += 1
        return created

    def add(self, leaf: bytes) -> None:
        """`append` without the list of created nodes: for recomputing a root quickly."""
        index = self._size
        value = leaf
        hashes = self._hashes
        while index & 1:
            value = node_hash(hashes.pop(), value)
            index >>= 1
        hashes.append(value)
        self._size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        value = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            value = node_hash(left, value)
        return value


def frontier_nodes(size: int) -> list[NodeId]:
    """The perfect nodes whose hashes make up the frontier of a tree of `size` leaves."""
    found: list[NodeId] = []
    start = 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            found.append((level, start >> level))
            start += 1 << level
    return found


class MemoryTree:
    """A whole tree in memory, every perfect node by level: for tests and small trees."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        index, level = len(self.levels[0]) - 1, 0
        while index & 1:
            parent = node_hash(self.levels[level][index - 1], self.levels[level][index])
            level += 1
            index >>= 1
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(parent)

    def read(self, level: int, index: int) -> bytes:
        try:
            return self.levels[level][index]
        except IndexError:
            raise LookupError(f"no node ({level}, {index}) in a tree of {self.size}") from None

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else size, self.read)


class LeafHashes:
    """Leaf hashes packed in one buffer (32 bytes each, no object per leaf): a recomputed tree
    of a million leaves in 32 MB. `read` computes perfect nodes from the leaves (cost: the
    node's width), which is what locating a difference needs, once per level."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def __len__(self) -> int:
        return len(self._buffer) // HASH_SIZE

    def append(self, leaf: bytes) -> None:
        self._buffer += leaf

    def buffer(self) -> memoryview:
        """The packed hashes, leaf 0 first (read-only)."""
        return memoryview(self._buffer).toreadonly()

    def __getitem__(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return bytes(self._buffer[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def read(self, level: int, index: int) -> bytes:
        start, width = index << level, 1 << level
        if start + width > len(self):
            raise LookupError(f"no node ({level}, {index}) in a tree of {len(self)}")
        hashes = [self[i] for i in range(start, start + width)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]


# --- hashes of subtrees, roots ----------------------------------------------------------------


def subtree_hash(start: int, end: int, read: NodeReader) -> bytes:
    """MTH(D[start:end]) from perfect nodes, following RFC 9162's recursion."""
    width = end - start
    if width < 1:
        raise ValueError(f"empty range [{start}, {end})")
    if width & (width - 1) == 0 and start % width == 0:
        return read(width.bit_length() - 1, start // width)
    k = split_point(width)
    return node_hash(subtree_hash(start, start + k, read), subtree_hash(start + k, end, read))


def tree_root(size: int, read: NodeReader) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, read)


def nodes_read(compute: Callable[[NodeReader], object]) -> list[NodeId]:
    """Which perfect nodes `compute` reads (they do not depend on the hashes), in first-read
    order: lets a stored tree fetch them all in one query, then compute for real."""
    wanted: dict[NodeId, None] = {}

    def record(level: int, index: int) -> bytes:
        wanted[(level, index)] = None
        return bytes(HASH_SIZE)

    compute(record)
    return list(wanted)


# --- proofs (RFC 9162 §2.1.3.1 and §2.1.4.1) -----------------------------------------------------


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """PATH(index, D[0:size]): the audit path of one leaf, bottom up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []

    def walk(m: int, start: int, end: int) -> None:
        width = end - start
        if width == 1:
            return
        k = split_point(width)
        if m < k:
            walk(m, start, start + k)
            path.append(subtree_hash(start + k, end, read))
        else:
            walk(m - k, start + k, end)
            path.append(subtree_hash(start, start + k, read))

    walk(index, 0, size)
    return path


def consistency_proof(first: int, second: int, read: NodeReader) -> list[bytes]:
    """PROOF(first, D[0:second]): proves the tree of `first` leaves is a prefix of the tree of
    `second` leaves. Empty when first is 0 or equal to second (nothing to prove)."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        width = end - start
        if m == width:
            if not whole:
                proof.append(subtree_hash(start, end, read))
            return
        k = split_point(width)
        if m <= k:
            subproof(m, start, start + k, whole)
            proof.append(subtree_hash(start + k, end, read))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(subtree_hash(start, start + k, read))

    subproof(first, 0, second, True)
    return proof


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------------


def _well_formed(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root a valid inclusion proof leads to; raises ProofError when it leads nowhere."""
    if not 0 <= index < size or not _well_formed(leaf, *proof):
        raise ProofError("malformed inclusion proof")
    fn, sn, value = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof longer than the tree is deep", "proof-too-long")
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            value = node_hash(value, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof shorter than the tree is deep", "proof-too-short")
    return value


def inclusion_problem(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> str | None:
    """Why `proof` does not show the leaf hash `leaf` at `index` in the tree (`size`, `root`),
    as one of the reason codes of docs/specs/merkle.md; None when it does."""
    if not 0 <= index < size:
        return "index-out-of-range"
    if not _well_formed(leaf, root, *proof):
        return "malformed-hash"
    try:
        found = root_from_inclusion_proof(leaf, index, size, proof)
    except ProofError as exc:
        return exc.reason or "proof-too-short"
    return None if found == root else "root-mismatch"


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when `proof` shows the leaf hash `leaf` at `index` in the tree (`size`, `root`)."""
    return inclusion_problem(leaf, index, size, proof, root) is None


def consistency_problem(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> str | None:
    """Why `proof` does not show the tree (`first`, `first_root`) to be a prefix of the tree
    (`second`, `second_root`), as one of the reason codes of docs/specs/merkle.md (RFC 9162
    §2.1.4.2, step by step); None when it does."""
    if not 0 <= first <= second:
        return "sizes-out-of-order"
    if not _well_formed(first_root, second_root, *proof):
        return "malformed-hash"
    if first == second:
        if proof:
            return "proof-not-empty"
        return None if first_root == second_root else "root-mismatch"
    if first == 0:
        # The empty tree is a prefix of every tree: nothing to prove, nothing to accept.
        return "proof-not-empty" if proof else None
    if not proof:
        return "proof-too-short"
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for value in path[1:]:
        if sn == 0:
            return "proof-too-long"
        if fn & 1 or fn == sn:
            fr = node_hash(value, fr)
            sr = node_hash(value, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, value)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "proof-too-short"
    if fr != first_root:
        return "first-root-mismatch"
    if sr != second_root:
        return "second-root-mismatch"
    return None


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when `proof` shows the tree (`first`, `first_root`) is a prefix of the tree
    (`second`, `second_root`)."""
    return consistency_problem(first, second, first_root, second_root, proof) is None


# --- locating a difference --------------------------------------------------------------------


def first_difference(
    size: int,
    root: bytes,
    candidates: NodeReader,
    recomputed: NodeReader,
    recomputed_size: int,
) -> tuple[int, int]:
    """Where a recomputed tree first differs from a tree of `size` leaves whose `root` is
    trusted (a signed checkpoint), as a leaf range [lo, hi): one leaf when hi == lo + 1.

    The descent follows RFC 9162's split. At each step the two children's hashes are taken
    from `candidates` (a stored tree, which may have been rewritten) and used only if they
    hash to the trusted parent; the first child whose recomputed hash differs is where the
    difference lies. When candidates are missing or do not hash to the parent, the descent
    stops there and the range says how far it got. Leaves at or beyond `recomputed_size` are
    missing from the recomputed tree and differ by definition. Call it only when the roots
    differ.
    """
    lo, hi, trusted = 0, size, root
    while hi - lo > 1:
        mid = lo + split_point(hi - lo)
        try:
            left, right = subtree_hash(lo, mid, candidates), subtree_hash(mid, hi, candidates)
        except LookupError:
            break
        if node_hash(left, right) != trusted:
            break
        same_left = mid <= recomputed_size and subtree_hash(lo, mid, recomputed) == left
        lo, hi, trusted = (mid, hi, right) if same_left else (lo, mid, left)
    return lo, hi
