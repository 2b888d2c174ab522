"""One acquisition step: propose_queries per strategy, retrain, evaluate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import mltasks.active as active
from mltasks.active import ALConfig, SlicePool, TrainingSet, evaluate, propose_queries, retrain
from mltasks.active import TestVolume as Volume
from mltasks.errors import InvalidQuery
from mltasks.infer import SlicePrediction, mc_predict_slices
from mltasks.nets import UNet, profile
from mltasks.query import suggest_tau
from mltasks.train import TrainConfig

N_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets run far faster on one thread, above all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(123)  # not train()'s seed 0, so a cold start differs
    return UNet(profile("tiny", n_classes=N_CLASSES, matrix=32, width=4)).mc_mode()


@pytest.fixture(scope="module")
def pool() -> SlicePool:
    rng = np.random.default_rng(0)
    images = rng.random((12, 32, 32), dtype=np.float32)
    labelled = np.zeros(12, bool)
    labelled[[0, 5]] = True
    return SlicePool(images, labelled)


def _config(**kw) -> ALConfig:
    return ALConfig(n_select=3, t_samples=3, batch_size=4, seed=1, **kw)


def _reference_u(model, pool, config, step):
    unl = pool.unlabelled
    pred = mc_predict_slices(pool.images[unl], model, t_samples=config.t_samples, batch_size=config.batch_size,
                             seed=config.seed * 1000 + step)  # fmt: skip
    return dict(zip(unl.tolist(), pred.pixel_uncertainty, strict=True))


def test_tau_queries_unlabelled_slices_at_u_at_least_tau(model, pool):
    u = _reference_u(model, pool, _config(), 2)
    tau = float(np.quantile(np.concatenate([v.ravel() for v in u.values()]), 0.9))
    queries = propose_queries(model, pool, _config(tau=tau), step=2)
    assert len(queries) == 3
    idx = [q.slice_index for q in queries]
    assert len(set(idx)) == 3 and not set(idx) & {0, 5}
    for q in queries:
        np.testing.assert_array_equal(q.mask, u[q.slice_index] >= tau)
        assert q.predicted.shape == (32, 32) and q.predicted.dtype == np.uint8
    # D_c holds the 2 x 3 most uncertain slices: every selected slice scores at least the 6th best
    scores = sorted((float(v.mean()) for v in u.values()), reverse=True)
    assert min(q.score for q in queries) >= scores[5] - 1e-12


def test_manual_asks_whole_slices_and_random_pixels_as_many_as_tau(model, pool):
    tau_q = propose_queries(model, pool, _config(tau=1e-3), step=1)
    manual = propose_queries(model, pool, _config(strategy="manual"), step=1)
    rand = propose_queries(model, pool, _config(strategy="random_pixels", tau=1e-3), step=1)
    assert (
        [q.slice_index for q in manual]
        == [q.slice_index for q in tau_q]
        == [q.slice_index for q in rand]
    )
    assert all(q.mask.all() for q in manual)
    assert sum(q.n_queried for q in rand) == sum(q.n_queried for q in tau_q)


@pytest.mark.parametrize("target", [0.05, 0.3])
def test_a_target_mac_picks_the_tau_that_queries_that_share_of_the_selected_pixels(model, pool, target):
    queries = propose_queries(model, pool, _config(target_mac=target), step=3)
    u = _reference_u(model, pool, _config(), 3)
    selected = np.stack([u[q.slice_index] for q in queries])
    tau, expected = suggest_tau(selected, target)
    masks = np.stack([q.mask for q in queries])
    np.testing.assert_array_equal(masks, selected >= tau)
    assert masks.sum() == expected <= target * masks.size
    rand = propose_queries(model, pool, _config(strategy="random_pixels", target_mac=target), step=3)
    assert sum(q.n_queried for q in rand) == expected


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_a_target_mac_outside_0_1_is_refused(bad):
    with pytest.raises(InvalidQuery, match="target_mac must lie in"):
        _config(target_mac=bad)


def test_random_slices_are_reproducible_and_whole(model, pool):
    a = propose_queries(model, pool, _config(strategy="random_slices"), step=4)
    b = propose_queries(model, pool, _config(strategy="random_slices"), step=4)
    assert [q.slice_index for q in a] == [q.slice_index for q in b]
    assert all(q.mask.all() and np.isnan(q.score) for q in a)
    assert not {q.slice_index for q in a} & {0, 5}


def test_a_fully_labelled_pool_gives_no_queries(model, pool):
    full = SlicePool(pool.images, np.ones(12, bool))
    assert propose_queries(model, full, _config()) == []


def test_an_unknown_strategy_is_refused():
    with pytest.raises(InvalidQuery, match="unknown strategy"):
        ALConfig(strategy="greedy")


def _tiny_set() -> TrainingSet:
    rng = np.random.default_rng(1)
    images = rng.random((4, 32, 32), dtype=np.float32)
    labels = (images > 0.5).astype(np.uint8)
    return TrainingSet(images, labels, np.ones_like(labels))


def test_warm_start_keeps_the_previous_weights_and_cold_start_does_not(model):
    cfg = _config(net=model.config, train=TrainConfig(max_epochs=0, augment=False))
    warm, _ = retrain(model, _tiny_set(), cfg, warm_start=True)
    cold, _ = retrain(model, _tiny_set(), cfg, warm_start=False)
    w0 = model.state_dict()["head.weight"]
    assert torch.equal(warm.state_dict()["head.weight"], w0)
    assert not torch.equal(cold.state_dict()["head.weight"], w0)


def test_retrain_trains_on_the_set_and_reports_history():
    cfg = _config(net=profile("tiny", n_classes=2, matrix=32, width=4),
                  train=TrainConfig(max_epochs=2, patience=0, augment=False, val_samples=1, batch_size=2))  # fmt: skip
    new, history = retrain(None, _tiny_set(), cfg, warm_start=False)
    assert isinstance(new, UNet) and [h["epoch"] for h in history] == [1, 2]


def test_retrain_without_model_or_net_is_an_error():
    with pytest.raises(InvalidQuery, match="ALConfig.net"):
        retrain(None, _tiny_set(), _config(), warm_start=False)


def test_evaluate_tables_dice_and_psv(monkeypatch, model):
    truth = np.zeros((4, 32, 32), np.uint8)
    truth[:, 4:12, 4:12] = 1
    pred = truth.copy()
    pred[:, 4:12, 4:8] = 0  # half of class 1 missed: Dice 2 * 128 / (128 + 256) = 2/3
    u = np.where(pred == 1, 0.2, 0.0).astype(np.float32)

    def fake(slices, m, **kw):
        return SlicePrediction(pred.copy(), u.copy(), np.zeros((4, 4), np.float32))

    monkeypatch.setattr(active, "mc_predict_slices", fake)
    ev = evaluate(model, [Volume("v", truth.astype(np.float32), truth, (1.0, 1.0, 1.0))])
    assert ev.dice[0, 1] == pytest.approx(2 / 3)
    assert np.isnan(ev.dice[0, 2])  # absent from the reference
    assert ev.psv[0, 1] == pytest.approx(0.2)
    assert ev.mean_dice == pytest.approx(2 / 3)
    assert np.isfinite(ev.asd[0, 1])


def test_training_set_grows_with_provenance():
    s = _tiny_set()
    grown = s.added(s.images[:1], s.labels[:1], np.zeros((1, 32, 32), np.uint8))
    assert grown.images.shape[0] == 5 and grown.provenance[-1].max() == 0


def test_config_counts_candidates():
    assert replace(_config(), candidate_factor=2.5).n_candidates == 8
