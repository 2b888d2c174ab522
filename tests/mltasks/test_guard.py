"""The guard of Eq. 7: the decision rule (every branch), apply_guard and its counters."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.errors import InvalidQuery, MissingAnswers
from mltasks.guard import (
    UNTRUSTED,
    GuardConfig,
    GuardDecision,
    air_outside_body,
    apply_guard,
    auto_label_errors,
    auto_labelled,
    decide,
    guard_query_mask,
)
from mltasks.query import ANSWERED, PREDICTED

NAN = float("nan")
# Held-out Dice per class: background, three structures (class 3 not in the held-out slices).
GOOD = np.array([0.995, 0.95, 0.7, NAN])


def test_manual_strategies_always_ask_whole_slices():
    for strategy in ("manual", "random_slices"):
        decision = decide(GOOD, strategy=strategy)
        assert decision.mode == "whole_slices" and decision.trusted == () and strategy in decision.reason


def test_the_paper_rule_trusts_every_prediction_even_of_a_useless_model():
    decision = decide(np.array([0.5, 0.01, 0.0, 0.02]), config=GuardConfig(rule="paper"))
    assert decision.mode == "auto_label" and decision.trusted is None and "paper" in decision.reason
    assert decide(None, config=GuardConfig(rule="paper")).trusted is None


def test_a_model_without_held_out_dice_asks_whole_slices():
    assert decide(None).mode == "whole_slices"
    decision = decide(np.array([0.99, NAN, NAN]))
    assert decision.whole_slices and "no held-out Dice" in decision.reason


def test_an_untrustworthy_model_asks_whole_slices():
    decision = decide(np.array([0.9, 0.05, 0.04, NAN]), config=GuardConfig(min_model_dice=0.5))
    assert decision.whole_slices and "0.045 is below 0.50" in decision.reason


def test_the_masked_rule_never_auto_labels():
    decision = decide(GOOD, config=GuardConfig(rule="masked"))
    assert decision.mode == "masked" and decision.trusted == ()


def test_the_guard_trusts_only_classes_above_their_thresholds():
    decision = decide(GOOD, config=GuardConfig(min_dice=0.9, min_background_dice=0.99))
    assert decision.mode == "auto_label" and decision.trusted == (0, 1)
    strict_background = decide(GOOD, config=GuardConfig(min_dice=0.9, min_background_dice=0.999))
    assert strict_background.trusted == (1,)


def test_the_guard_masks_when_no_class_passes():
    config = GuardConfig(min_dice=0.95, min_model_dice=0.5, background_outside_body=False)
    decision = decide(np.array([0.9, 0.8, 0.7]), config=config)
    assert decision.mode == "masked" and decision.trusted == () and "0.95" in decision.reason


def test_with_no_class_trusted_the_background_outside_the_body_is_still_labelled():
    decision = decide(np.array([0.9, 0.8, 0.7]), config=GuardConfig(min_dice=0.95))
    assert decision.mode == "auto_label" and decision.trusted == () and decision.background_outside_body
    predicted = np.array([[1, 1, 2, 0]], np.uint8)
    air = np.array([[True, False, False, False]])
    labels, provenance = apply_guard(predicted, np.zeros((1, 4), bool), np.full((1, 4), -1), decision, air=air)
    assert labels.tolist() == [[0, 255, 255, 255]]  # background in the air whatever the model says
    assert provenance.tolist() == [[PREDICTED, UNTRUSTED, UNTRUSTED, UNTRUSTED]]


def test_a_boundary_margin_keeps_only_pixels_inside_a_uniform_prediction():
    predicted = np.zeros((5, 7), np.uint8)
    predicted[:, 3:] = 1
    decision = GuardDecision("auto_label", (0, 1), "", boundary_margin=1)
    labels, provenance = apply_guard(predicted, np.zeros((5, 7), bool), np.full((5, 7), -1), decision)
    assert (labels[:, [2, 3]] == 255).all()  # the two columns along the border are left out
    assert (labels[:, :2] == 0).all() and (labels[:, 4:] == 1).all()
    assert auto_labelled(provenance) == 25
    _, on_finer_grid = apply_guard(predicted, np.zeros((5, 7), bool), np.full((5, 7), -1), decision, pixel_scale=2.0)
    assert auto_labelled(on_finer_grid) == 15  # a margin of 2 pixels: columns 0, 5 and 6 stay


def test_the_masked_rule_ignores_the_body_too():
    decision = decide(GOOD, config=GuardConfig(rule="masked"))
    labels, _ = apply_guard(np.zeros((2, 2), np.uint8), np.zeros((2, 2), bool), np.full((2, 2), -1), decision,
                            air=np.ones((2, 2), bool))  # fmt: skip
    assert (labels == 255).all()


def test_psv_above_its_limit_removes_a_structure_from_the_trusted_ones():
    psv = np.array([NAN, 0.02, 0.001, NAN])
    config = GuardConfig(min_dice=0.6, max_psv=0.01)
    assert decide(GOOD, config=config, psv=psv).trusted == (0, 2)
    assert decide(GOOD, config=GuardConfig(min_dice=0.6), psv=psv).trusted == (0, 1, 2)  # no limit set


def test_bad_settings_and_tables_are_refused_with_the_reason():
    with pytest.raises(InvalidQuery, match="unknown guard rule 'sometimes'"):
        GuardConfig(rule="sometimes")
    with pytest.raises(InvalidQuery, match=r"min_dice must lie in \[0, 1\], got 1.5"):
        GuardConfig(min_dice=1.5)
    with pytest.raises(InvalidQuery, match="one value per class"):
        decide(np.array([[0.9]]))
    with pytest.raises(InvalidQuery, match="psv has 2 classes, held_out_dice 4"):
        decide(GOOD, config=GuardConfig(max_psv=0.1), psv=np.array([0.0, 0.0]))
    with pytest.raises(InvalidQuery, match="boundary_margin must be >= 0 pixels, got -1"):
        GuardConfig(boundary_margin=-1)
    with pytest.raises(InvalidQuery, match="pixel_scale must be a positive number"):
        apply_guard(*_slice(), decide(GOOD), pixel_scale=0)
    with pytest.raises(InvalidQuery, match=r"air mask \(3, 3\) differs from the slice \(2, 4\)"):
        apply_guard(*_slice(), decide(GOOD), air=np.ones((3, 3), bool))
    with pytest.raises(InvalidQuery, match=r"hu_slices must be \(N, H, W\)"):
        air_outside_body(np.zeros((4, 4)))


def _slice():
    predicted = np.array([[0, 0, 1, 1], [2, 2, 1, 0]], np.uint8)
    mask = np.array([[1, 0, 0, 0], [0, 0, 1, 0]], bool)
    answers = np.where(mask, 3, -1)
    return predicted, mask, answers


def test_apply_guard_keeps_trusted_predictions_and_ignores_the_rest():
    predicted, mask, answers = _slice()
    labels, provenance = apply_guard(predicted, mask, answers, GuardDecision("auto_label", (1,), ""))
    assert labels.tolist() == [[3, 255, 1, 1], [255, 255, 3, 255]]
    assert provenance.tolist() == [[ANSWERED, UNTRUSTED, PREDICTED, PREDICTED],
                                   [UNTRUSTED, UNTRUSTED, ANSWERED, UNTRUSTED]]  # fmt: skip
    assert labels.dtype == np.uint8


def test_apply_guard_with_the_paper_rule_is_eq_7():
    predicted, mask, answers = _slice()
    labels, provenance = apply_guard(predicted, mask, answers, GuardDecision("auto_label", None, ""))
    assert labels.tolist() == [[3, 0, 1, 1], [2, 2, 3, 0]]
    assert auto_labelled(provenance) == 6


def test_masked_and_whole_slice_decisions_train_on_answers_only():
    predicted, mask, answers = _slice()
    for mode in ("masked", "whole_slices"):
        labels, provenance = apply_guard(predicted, mask, answers, GuardDecision(mode, (), ""))
        assert (labels[~mask] == 255).all() and (labels[mask] == 3).all()
        assert auto_labelled(provenance) == 0


def test_apply_guard_refuses_unanswered_queried_pixels():
    predicted, mask, answers = _slice()
    answers[0, 0] = -1
    with pytest.raises(MissingAnswers, match="1 queried pixels have no answer"):
        apply_guard(predicted, mask, answers, GuardDecision("masked", (), ""))


def test_whole_slice_decisions_ask_for_every_pixel():
    mask = np.zeros((3, 4), bool)
    assert guard_query_mask(mask, GuardDecision("whole_slices", (), "")).all()
    assert not guard_query_mask(mask, GuardDecision("masked", (), "")).any()


def test_auto_label_errors_counts_wrong_auto_labels_where_the_reference_is_known():
    labels = np.array([[1, 2, 3, 255]], np.uint8)
    provenance = np.array([[PREDICTED, PREDICTED, ANSWERED, UNTRUSTED]], np.uint8)
    reference = np.array([[1, 1, 0, 0]])
    assert auto_label_errors(labels, provenance, reference) == 1  # the answered pixel never counts
    assert auto_label_errors(labels, provenance, np.array([[1, 255, 0, 0]])) == 0  # unknown reference
    with pytest.raises(InvalidQuery, match="shapes differ"):
        auto_label_errors(labels, provenance, reference[:, :2])


def test_a_decision_and_its_settings_are_plain_values():
    decision = decide(GOOD)
    assert decision.to_dict() == {"mode": "auto_label", "trusted": [0, 1], "reason": decision.reason,
                                  "boundary_margin": 2, "background_outside_body": True}  # fmt: skip
    assert GuardDecision.from_dict(decision.to_dict()) == decision
    paper = decide(GOOD, config=GuardConfig(rule="paper"))
    assert GuardDecision.from_dict(paper.to_dict()) == paper
    assert GuardConfig.from_dict(GuardConfig(min_dice=0.8).to_dict()) == GuardConfig(min_dice=0.8)


def test_air_outside_the_body_spares_every_leg_and_the_gas_inside():
    hu = np.full((1, 12, 20), -1000.0)
    hu[0, 2:10, 1:7] = 40.0  # left thigh
    hu[0, 2:10, 12:19] = 40.0  # right thigh, a separate region
    hu[0, 5, 3] = -900.0  # gas inside the left thigh
    air = air_outside_body(hu, margin=1)[0]
    assert not air[2:10, 1:7].any() and not air[2:10, 12:19].any()  # both legs, gas included
    assert not air[5, 7] and not air[1, 3]  # one pixel past the skin is not air
    assert air[0, 9] and air[11, 10] and air[6, 9]  # the gap between the legs and the corners are
