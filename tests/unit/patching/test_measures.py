"""Recovery measures and the pair filter (clipmech.patching.measures; methods.md Sec. 8)."""

import numpy as np
import pytest

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


def test_a_min_effect_keeping_no_pair_fails_naming_it():
    """patching.min_effect above every effect: the tracing stops before its sweeps instead of publishing NaN."""
    from clipmech.patching.runs import check_kept

    colour = ({"corruption": "colour", "tower": "visual"}, _result([2.0, -0.13, 1.0], [0.0, -2.0, 0.8]))
    text = ({"corruption": "colour", "tower": "text"}, _result([0.5], [0.4]))
    check_kept([colour, text], 0.5)  # pair 0 of the visual run is kept
    with pytest.raises(ValueError) as error:
        check_kept([colour, text], 2.5)
    message = str(error.value)
    assert "patching.min_effect = 2.5 keeps no pair: of the 4 pairs" in message
    assert "3 have a right clean run and the largest effect m_clean - m_corrupt among them is 2 logits" in message
    with pytest.raises(ValueError, match="no corruption of patching.corruptions has a usable pair"):
        check_kept([], 0.5)


def test_no_right_clean_run_is_a_warning_not_a_min_effect_error(caplog):
    """A model that answers no pair (a barely trained one): no min_effect can help, so the tables are NaN
    and the log says why."""
    from clipmech.patching.runs import check_kept

    wrong = ({"corruption": "binding", "tower": "visual"}, _result([-0.2, -1.0], [-0.5, -3.0]))
    with caplog.at_level("WARNING", logger="clipmech.patching.runs"):
        check_kept([wrong], 0.0)
    assert "no clean run of the 2 pairs over every corruption and tower is right" in caplog.text
