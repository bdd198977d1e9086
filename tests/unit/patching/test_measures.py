"""Recovery measures and the pair filter (clipmech.patching.measures; methods.md Sec. 8)."""

import numpy as np

from clipmech.patching import measures
from clipmech.patching.engine import SweepResult


def _result(m_clean, m_corrupt):
    m_clean, m_corrupt = np.asarray(m_clean, dtype=np.float64), np.asarray(m_corrupt, dtype=np.float64)
    return SweepResult(m_clean, m_corrupt, np.empty((m_clean.size, 0)), "denoising")


def test_a_pair_whose_clean_run_is_wrong_is_dropped():
    """Pair 1's corruption moves it by 1.87 logits, but its clean run prefers the foil (m_clean = -0.13)."""
    result = _result([2.0, -0.13, 1.0, 3.0, 0.0], [0.0, -2.0, 0.8, 2.5, -1.0])
    np.testing.assert_array_equal(measures.kept_pairs(result, 0.5), [True, False, False, True, False])
    np.testing.assert_array_equal(measures.kept_pairs(result, 0.1), [True, False, True, True, False])
    np.testing.assert_array_equal(measures.clean_right(result), [True, False, True, True, False])
