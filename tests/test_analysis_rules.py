"""Range-test arithmetic without training: schedules, smoothing, suggestion rules, the loss band's limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.analysis import range_tests as rt
from cnnlab.analysis.landscape import band_limits
from cnnlab.errors import CnnlabError


def test_exponential_and_linear_schedules_hit_both_bounds():
    f = rt.lr_at_step(1e-6, 1.0, 7, "exp")
    lrs = [f(i) for i in range(7)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)  # one decade per step
    g = rt.lr_at_step(0.1, 0.5, 5, "linear")
    assert [round(g(i), 10) for i in range(5)] == [0.1, 0.2, 0.3, 0.4, 0.5]


@pytest.mark.parametrize("start,end,steps,mode", [(0, 1, 10, "exp"), (1, 0.1, 10, "exp"), (1e-3, 1, 1, "exp"),
                                                  (1e-3, 1, 10, "cosine")])
def test_bad_schedules_are_user_errors(start, end, steps, mode):
    with pytest.raises(CnnlabError):
        rt.lr_at_step(start, end, steps, mode)


def test_course_candidates_are_ten_decades_apart():
    c = rt.candidates(11, 1e-9, 1e1)
    assert c[0] == pytest.approx(1e-9) and c[-1] == pytest.approx(10.0) and len(c) == 11
    assert np.allclose(np.diff(np.log10(c)), 1.0)


def test_bias_corrected_ema_of_a_constant_is_that_constant():
    assert rt.ema([3.0] * 20, 0.98) == pytest.approx([3.0] * 20)


def test_centred_mean_does_not_lag_a_symmetric_dip():
    # a V with its bottom at index 10: the causal EMA puts its minimum later, the centred mean at the same place
    v = [abs(i - 10) + 1.0 for i in range(21)]
    assert int(np.argmin(rt.centred_mean(v, 3))) == 10
    assert int(np.argmin(rt.ema(v, 0.8))) > 10
    assert rt.centred_mean([1.0, 2.0, 3.0], 1) == pytest.approx([1.5, 2.0, 2.5])


# A U-shaped curve in log(lr): flat, falling between 1e-4 and 1e-2, lowest at 1e-1, then rising.
LRS = list(np.geomspace(1e-6, 1.0, 61))
LOSS = [2.3 - 1.5 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + (8 * (lr - 0.1) ** 2 if lr > 0.1 else 0) for lr in LRS]


def test_smith_rule_brackets_the_fall_and_stops_at_the_lowest_loss():
    s = rt.suggest(LRS, LOSS, "smith")
    assert s.lr_max == pytest.approx(LRS[int(np.argmin(LOSS))])
    fall = LOSS[0] - min(LOSS)
    i = LRS.index(s.lr_min)
    assert LOSS[0] - LOSS[i] >= 0.1 * fall > LOSS[0] - LOSS[i - 1]
    assert s.lr_min < s.lr_max


def test_steepest_rule_finds_the_steepest_point_and_a_quarter_of_it():
    s = rt.suggest(LRS, LOSS, "steepest")
    assert s.lr_max == pytest.approx(1e-3, rel=0.3)  # the sigmoid's midpoint in log(lr)
    assert s.lr_min == pytest.approx(s.lr_max / 4)


def test_rules_ignore_everything_after_the_first_non_finite_loss():
    losses = LOSS[:40] + [float("nan")] + [0.0] * 20  # the 0.0s after the NaN must not count as the minimum
    s = rt.suggest(LRS, losses, "min10")
    assert s.lr_max == pytest.approx(LRS[int(np.argmin(LOSS[:40]))] / 10)


def test_unknown_rule_lists_the_known_ones():
    with pytest.raises(CnnlabError, match="smith"):
        rt.suggest(LRS, LOSS, "fastest")


def test_batch_rule_takes_half_and_most_of_the_fall():
    sizes = [64, 128, 256, 512, 1024, 2048]
    losses = [2.0, 1.6, 1.2, 1.05, 1.01, 1.0]  # fall 1.0: 40%, 80%, 95%, 99%, 100%
    b_min, b_max, how = rt.suggest_batch(sizes, losses)
    assert (b_min, b_max) == (256, 512)
    assert "50%" in how and "90%" in how
    flat = rt.suggest_batch(sizes, [1.0] * 6)
    assert flat[:2] == (64, 64)
    with pytest.raises(CnnlabError, match="lower optim.lr"):
        rt.suggest_batch(sizes, [float("nan")] * 6)


def test_batch_words_say_the_range_and_the_fall_it_rests_on():
    rows = [{"batch_size": b, "final_train_loss": l, "steps": 859}
            for b, l in zip([64, 128, 256, 512, 1024, 2048], [2.0, 1.6, 1.2, 1.05, 1.01, 1.0])]
    words = rt.batch_words(rows)
    assert words.startswith("b_min = 256 and b_max = 512: after 859 steps at each batch size, the training loss "
                            "fell from 2.0000 at batch 64 to its lowest, 1.0000, at 2,048, a fall of 50.0%")
    assert "weak basis" not in words   # a 50% fall is a real basis
    small = [{**r, "final_train_loss": 1.0 - 0.005 * i / 5} for i, r in enumerate(rows)]   # 0.5% in all
    assert rt.batch_words(small).startswith("No cyclical range: b_min = b_max = 64")


def test_lr_words_name_the_range_the_lowest_loss_and_divergence():
    rows = [{"lr": lr, "final_train_loss": l, "diverged": int(l != l), "steps": 100}
            for lr, l in zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.3, 2.0, 0.9, 0.5, float("nan")])]
    words = rt.lr_words(rows, "smith")
    s = rt.suggest([r["lr"] for r in rows], [r["final_train_loss"] for r in rows], "smith")
    assert words.startswith(f"lr_min = {s.lr_min:.3g} and lr_max = {s.lr_max:.3g}: over 5 rates from 0.0001 to 1 "
                            "(100 steps each), the training loss went from 2.300 at 0.0001 to its lowest, 0.500, "
                            "at 0.1, and diverged at every rate from 1 up")
    assert rt.ANALYSIS_WORDS["find-lr"](rows, ["suggested ... (rule 'steepest': ...)"]) == rt.lr_words(rows,
                                                                                                      "steepest")


def test_the_report_keeps_the_csv_of_every_analysis_with_words():
    from cnnlab.experiments.answers import WORDED_ANALYSES

    assert set(WORDED_ANALYSES) == set(rt.ANALYSIS_WORDS)


def test_batch_sizes_are_powers_of_two_between_the_bounds():
    assert rt.batch_sizes(64, 8192) == [64, 128, 256, 512, 1024, 2048, 4096, 8192]


curve = st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf"))),
                 min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(curve, min_size=1, max_size=5))
def test_band_max_is_never_below_min(curves):
    lo, hi = band_limits(curves)
    assert len(lo) == len(hi) == max(len(c) for c in curves)
    for i, (a, b) in enumerate(zip(lo, hi)):
        finite = [c[i] for c in curves if i < len(c) and math.isfinite(c[i])]
        if finite:
            assert a <= b and a == min(finite) and b == max(finite)
        else:
            assert math.isnan(a) and math.isnan(b)


def test_batch_rule_refuses_a_range_when_the_loss_hardly_moves():
    """At lr_min (HW3 2.4) the measured LeNet-5 losses were 2.1842 ... 2.1818 over batch 64 ... 2048: a 0.1% fall,
    no range to cycle over."""
    sizes = [64, 128, 256, 512, 1024, 2048]
    b_min, b_max, how = rt.suggest_batch(sizes, [2.1842, 2.1824, 2.1820, 2.1822, 2.1821, 2.1818])
    assert (b_min, b_max) == (64, 64) and "only 0.11%" in how
    assert rt.suggest_batch(sizes, [2.0, 1.9, 1.8, 1.7, 1.6, 1.5])[:2] != (64, 64)  # a 25% fall gives a range


def test_smoothness_words_compare_the_networks_and_flag_one_still_on_its_plateau():
    """Project 2 §2.4.2: VGG-A without BN had not left ln 10 at its lr, so its small beta is not smoothness."""
    from cnnlab.analysis.smoothness import smoothness_words

    rows = [{"label": "plain", "step": s, "loss": 2.3026 - 1e-5 * s, "beta_eff": b} for s, b in ((1, 17.0), (15, 0.2),
                                                                                              (30, 0.1))]
    rows += [{"label": "bn", "step": s, "loss": 2.30 - 0.02 * s, "beta_eff": b} for s, b in ((1, 90.0), (15, 40.0),
                                                                                         (30, 30.0))]
    words = smoothness_words(rows)
    assert words.startswith("The lowest effective beta-smoothness (the gradient changes least per unit moved along "
                            "it) is plain's.")
    assert "plain: median effective beta-smoothness 0.2, its loss 2.3026 -> 2.3023 over the trace (it had barely " \
           "left its starting loss)" in words
    assert "bn: median effective beta-smoothness 40," in words and "compare such a network's beta with care" in words
    moving = [r for r in rows if r["label"] == "bn"] + [{**r, "label": "bn2"} for r in rows if r["label"] == "bn"]
    assert "with care" not in smoothness_words(moving)
