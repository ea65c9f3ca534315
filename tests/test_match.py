"""Known-answer tests of mutual nearest neighbour matching (``sarreg.match.match_mnn``)."""
from __future__ import annotations

import numpy as np
import pytest

from sarreg.match import Matches, match_mnn


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _pairs(m: Matches) -> set[tuple[int, int]]:
    return set(zip(m.idx1.tolist(), m.idx2.tolist()))


def test_permutation_is_recovered_exactly():
    rng = np.random.default_rng(0)
    d1 = _unit(rng.normal(size=(50, 128)))
    perm = rng.permutation(50)
    d2 = d1[perm]  # d2[j] = d1[perm[j]]
    m = match_mnn(d1, d2)
    assert len(m) == 50 and m.idx1.dtype == np.int64 and m.idx2.dtype == np.int64
    assert m.similarity.dtype == np.float32
    assert np.array_equal(perm[m.idx2], m.idx1)
    assert np.allclose(m.similarity, 1.0, atol=1e-5)


def test_only_mutual_nearest_neighbours_are_kept():
    # a1 and a2 both have b0 as nearest neighbour; b0 prefers a1 (cos 0.99 vs 0.8): only (1, 0) survives.
    # a0 <-> b1 are mutual (orthogonal to everything else).
    d1 = _unit([[0, 0, 1], [1, 0.1425, 0], [1, 0.75, 0]])
    d2 = _unit([[1, 0, 0], [0, 0, 1]])
    m = match_mnn(d1, d2)
    assert _pairs(m) == {(0, 1), (1, 0)}
    sim = dict(zip(m.idx1.tolist(), m.similarity.tolist()))
    assert sim[0] == pytest.approx(1.0) and sim[1] == pytest.approx(1 / np.sqrt(1 + 0.1425 ** 2), abs=1e-6)


def test_ratio_test_drops_ambiguous_matches():
    # query 0 is close to b0 and almost as close to b1 (ambiguous); query 1 is clearly b2
    d1 = _unit([[1, 0.045, 0, 0], [0, 0, 1, 0]])
    d2 = _unit([[1, 0, 0, 0], [1, 0.1, 0, 0], [0, 0, 1, 0.05]])
    assert _pairs(match_mnn(d1, d2)) == {(0, 0), (1, 2)}
    # query 0 is 2.58 deg from b0 and 3.13 deg from b1: distance ratio 0.82 fails 0.8, passes 1.5
    assert _pairs(match_mnn(d1, d2, ratio=0.8)) == {(1, 2)}
    assert _pairs(match_mnn(d1, d2, ratio=1.5)) == {(0, 0), (1, 2)}


def test_min_similarity_and_single_candidate():
    d1 = _unit([[1, 0], [0, 1]])
    d2 = _unit([[1, 1]])  # cos 0.707 to both; the tie goes to the first row
    m = match_mnn(d1, d2)
    assert _pairs(m) == {(0, 0)} and m.similarity[0] == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert len(match_mnn(d1, d2, min_similarity=0.9)) == 0
    assert _pairs(match_mnn(d1, d2, ratio=0.8)) == {(0, 0)}  # one candidate: no second best, ratio not applied


def test_empty_inputs_give_empty_matches():
    d = _unit(np.eye(4))
    for a, b in ((np.zeros((0, 4), np.float32), d), (d, np.zeros((0, 4), np.float32))):
        m = match_mnn(a, b)
        assert len(m) == 0 and m.idx1.dtype == np.int64 and m.similarity.dtype == np.float32


def test_row_blocks_do_not_change_the_result():
    rng = np.random.default_rng(1)
    d1 = _unit(rng.normal(size=(37, 16)))
    d2 = _unit(d1[rng.permutation(37)][:30] + 0.3 * rng.normal(size=(30, 16)))
    whole = match_mnn(d1, d2)
    for block in (1, 5, 36):
        m = match_mnn(d1, d2, block=block)
        assert np.array_equal(m.idx1, whole.idx1) and np.array_equal(m.idx2, whole.idx2)
        assert np.allclose(m.similarity, whole.similarity)
    assert len(whole) >= 20  # most noisy copies still find their original
