"""The Merkle math against RFC 6962 / RFC 9162 known answers, and against the RFC's own
recursive definitions for every small tree.

Expected values: the standard eight test leaves and their roots, inclusion and consistency
proofs as published with the RFC 6962 reference implementations (google/certificate-transparency
and transparency-dev/merkle test data), and the hasher's known answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from projections.evidence.merkle import (
    EMPTY_ROOT,
    Frontier,
    LeafHashes,
    MemoryTree,
    ProofError,
    consistency_proof,
    first_difference,
    inclusion_proof,
    leaf_hash,
    node_hash,
    nodes_read,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# ROOTS[n - 1] is the root of the tree of the first n leaves.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _h(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# (leaf index, tree size, audit path)
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (first size, second size, consistency proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def kat_tree(size: int = 8) -> MemoryTree:
    return MemoryTree(leaf_hash(leaf) for leaf in LEAVES[:size])


# --- the RFC's definitions, written out directly over the list of leaves --------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: Sequence[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: Sequence[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = _k(len(data))
    if m < k:
        return [*path(m, data[:k]), mth(data[k:])]
    return [*path(m - k, data[k:]), mth(data[:k])]


def subproof(m: int, data: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, data[:k], whole), mth(data[k:])]
    return [*subproof(m - k, data[k:], False), mth(data[:k])]


def sample_data(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


# --- hasher known answers -------------------------------------------------------------------------


def test_hasher_known_answers() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        leaf_hash(b"L123456").hex()
        == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    # Domain separation: a node is never the leaf of its two children's concatenation.
    a, b = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) != node_hash(b, a)


# --- roots ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_standard_leaves(size: int) -> None:
    expected = ROOTS[size - 1]
    tree = kat_tree(size)
    assert tree.root() == expected
    frontier = Frontier()
    for leaf in LEAVES[:size]:
        frontier.append(leaf_hash(leaf))
    assert frontier.root() == expected
    # The bigger tree's stored nodes give every past root too.
    assert kat_tree(8).root(size) == expected


def test_empty_tree_root() -> None:
    assert Frontier().root() == EMPTY_ROOT
    assert tree_root(0, kat_tree().read) == EMPTY_ROOT


# --- inclusion --------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_known_answers(index: int, size: int, expected: list[bytes]) -> None:
    tree = kat_tree()  # proofs for past sizes come from the tree of 8
    assert inclusion_proof(index, size, tree.read) == expected
    leaf = leaf_hash(LEAVES[index])
    assert verify_inclusion(leaf, index, size, expected, ROOTS[size - 1])


def _corrupted_inclusions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size // 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, leaf_hash(b"WrongLeaf")),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        flipped = bytearray(proof[i])
        flipped[0] ^= 8
        probes.append(
            (
                f"bit flip in [{i}]",
                index,
                size,
                [*proof[:i], bytes(flipped), *proof[i + 1 :]],
                root,
                leaf,
            )
        )
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf)
        )
    return probes


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(index: int, size: int, expected: list[bytes]) -> None:
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    accepted = [
        name
        for name, i, n, proof, r, lh in _corrupted_inclusions(index, size, expected, root, leaf)
        if verify_inclusion(lh, i, n, proof, r)
    ]
    assert accepted == []


def test_inclusion_edge_cases() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], leaf)
    for index, size in ((0, 0), (1, 0), (2, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ProofError):
        inclusion_proof(8, 8, kat_tree().read)
    with pytest.raises(ProofError):
        inclusion_proof(0, 0, kat_tree().read)


# --- consistency ----------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_consistency_proofs_known_answers(first: int, second: int, expected: list[bytes]) -> None:
    assert consistency_proof(first, second, kat_tree().read) == expected
    assert verify_consistency(first, second, ROOTS[first - 1], ROOTS[second - 1], expected)


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(first: int, second: int, expected: list[bytes]) -> None:
    r1, r2 = ROOTS[first - 1], ROOTS[second - 1]
    probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
        ("first - 1", first - 1, second, r1, r2, expected),
        ("first + 1", first + 1, second, r1, r2, expected),
        ("first ^ 2", first ^ 2, second, r1, r2, expected),
        ("second * 2", first, second * 2, r1, r2, expected),
        ("second // 2", first, second // 2, r1, r2, expected),
        ("wrong first root", first, second, SOME_HASH, r2, expected),
        ("wrong second root", first, second, r1, SOME_HASH, expected),
        ("swapped roots", first, second, r2, r1, expected),
        ("empty proof", first, second, r1, r2, []),
        ("trailing garbage", first, second, r1, r2, [*expected, b""]),
        ("trailing first root", first, second, r1, r2, [*expected, r1]),
        ("trailing second root", first, second, r1, r2, [*expected, r2]),
        ("preceding garbage", first, second, r1, r2, [b"", *expected]),
        ("preceding first root", first, second, r1, r2, [r1, *expected]),
        ("preceding second root", first, second, r1, r2, [r2, *expected]),
        ("preceding proof[0]", first, second, r1, r2, [expected[0], *expected]),
        ("truncated", first, second, r1, r2, expected[:-1]),
    ]
    for i in range(len(expected)):
        flipped = bytearray(expected[i])
        flipped[0] ^= 16
        probes.append(
            (
                f"bit flip [{i}]",
                first,
                second,
                r1,
                r2,
                [*expected[:i], bytes(flipped), *expected[i + 1 :]],
            )
        )
    accepted = [name for name, m, n, a, b, p in probes if verify_consistency(m, n, a, b, p)]
    assert accepted == []


def test_consistency_edge_cases() -> None:
    r1, r2 = leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2")
    assert verify_consistency(0, 0, r1, r1, [])
    assert verify_consistency(0, 1, r1, r2, [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert not verify_consistency(0, 0, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 0, r1, r2, [])
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    with pytest.raises(ProofError):
        consistency_proof(9, 8, kat_tree().read)


# --- every small tree against the RFC's recursive definitions --------------------------------


def test_all_small_trees_match_the_rfc_definitions() -> None:
    data = sample_data(70)
    tree = MemoryTree(leaf_hash(d) for d in data)
    frontier = Frontier()
    for n in range(1, 71):
        frontier.append(leaf_hash(data[n - 1]))
        root = mth(data[:n])
        assert frontier.root() == root == tree.root(n), n
        for m in range(n):
            proof = inclusion_proof(m, n, tree.read)
            assert proof == path(m, data[:n]), (m, n)
            assert verify_inclusion(leaf_hash(data[m]), m, n, proof, root)
            assert not verify_inclusion(leaf_hash(data[m]), m, n, proof, SOME_HASH)
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, tree.read)
            assert proof == subproof(m, data[:n], True), (m, n)
            assert verify_consistency(m, n, mth(data[:m]), root, proof), (m, n)
            if m < n:
                assert not verify_consistency(m, n, mth([*data[: m - 1], b"x"]), root, proof)


def test_frontier_creates_each_perfect_node_once_and_reloads() -> None:
    data = sample_data(37)
    tree = MemoryTree(leaf_hash(d) for d in data)
    frontier = Frontier()
    created: dict[tuple[int, int], bytes] = {}
    for d in data:
        for level, index, value in frontier.append(leaf_hash(d)):
            assert (level, index) not in created
            created[(level, index)] = value
    expected = {
        (level, index): value
        for level, values in enumerate(tree.levels)
        for index, value in enumerate(values)
    }
    assert created == expected
    reloaded = Frontier.load(37, tree.read)
    assert reloaded.hashes == frontier.hashes
    assert reloaded.root() == frontier.root()


def test_nodes_read_names_what_a_proof_needs() -> None:
    tree = kat_tree()
    wanted = nodes_read(lambda read: inclusion_proof(2, 7, read))
    fetched = {node: tree.read(*node) for node in wanted}
    assert inclusion_proof(2, 7, lambda lv, ix: fetched[(lv, ix)]) == inclusion_proof(
        2, 7, tree.read
    )


def test_leaf_hashes_buffer_reads_perfect_nodes() -> None:
    data = sample_data(13)
    leaves = LeafHashes()
    for d in data:
        leaves.append(leaf_hash(d))
    tree = MemoryTree(leaf_hash(d) for d in data)
    assert len(leaves) == 13
    assert tree_root(13, leaves.read) == tree.root() == mth(data)
    with pytest.raises(LookupError):
        leaves.read(2, 3)


# --- locating the first difference -----------------------------------------------------------


@pytest.mark.parametrize("changed", [0, 1, 5, 16, 31, 32])
def test_first_difference_is_found_exactly_when_the_stored_tree_is_intact(changed: int) -> None:
    data = sample_data(33)
    authentic = MemoryTree(leaf_hash(d) for d in data)
    tampered = list(data)
    tampered[changed] = b"forged"
    recomputed = MemoryTree(leaf_hash(d) for d in tampered)
    assert first_difference(33, authentic.root(), authentic.read, recomputed.read, 33) == (
        changed,
        changed + 1,
    )


def test_first_difference_of_a_truncated_tree_is_the_first_missing_leaf() -> None:
    data = sample_data(20)
    authentic = MemoryTree(leaf_hash(d) for d in data)
    shorter = MemoryTree(leaf_hash(d) for d in data[:14])
    assert first_difference(20, authentic.root(), authentic.read, shorter.read, 14) == (14, 15)


def test_first_difference_stops_where_the_candidates_are_not_authentic() -> None:
    data = sample_data(24)
    authentic = MemoryTree(leaf_hash(d) for d in data)
    tampered = list(data)
    tampered[9] = b"forged"
    rewritten = MemoryTree(leaf_hash(d) for d in tampered)
    # The attacker's own tree offers no hash that leads to the signed root: no narrowing.
    assert first_difference(24, authentic.root(), rewritten.read, rewritten.read, 24) == (0, 24)
