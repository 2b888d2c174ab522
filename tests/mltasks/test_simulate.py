"""The simulation end to end on tiny phantoms: CSV rows, MAC consistent with the masks, figures."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from mltasks.__main__ import main
from mltasks.errors import InvalidSimulationConfig
from mltasks.simulate import load_simulation_config, run_simulation

CONFIG = {
    "steps": 2,
    "strategies": ["manual", "random_pixels", "tau=2.5e-3"],
    "initial_fraction": 0.2,
    "step_fraction": 0.1,
    "random_pixels_tau": 2.5e-3,
    "warm_start": True,
    "data": {"kind": "phantoms", "pool": 2, "test": 1, "size": [12, 64, 64], "seed": 7},
    "network": {
        "profile": "tiny",
        "width": 4,
        "slice_interval_mm": "native",
        "t_samples": 2,
        "batch_size": 8,
    },
    "training": {
        "max_epochs": 1,
        "patience": 0,
        "augment": False,
        "val_samples": 1,
        "batch_size": 4,
    },
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sim")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    try:
        assert (
            main(
                ["simulate", "--config", str(folder / "config.json"), "--out", str(folder / "out")]
            )
            == 0
        )
    finally:
        torch.set_num_threads(before)
    with (folder / "out" / "simulation.csv").open() as f:
        return folder / "out", list(csv.DictReader(f))


def test_it_writes_one_row_per_strategy_and_step(result):
    _, rows = result
    assert [(r["strategy"], int(r["step"])) for r in rows] == [
        (s, step) for s in CONFIG["strategies"] for step in range(3)
    ]
    assert "dice_gluteus_maximus" in rows[0] and "wall_time_s" in rows[0]
    assert all(0.0 <= float(r["mean_dice"]) <= 1.0 for r in rows)


def test_labelled_slices_grow_by_the_added_slices(result):
    _, rows = result
    # 12-slice volumes: 20 % -> 2 per volume at start, 10 % -> 1 per volume per step
    for strategy in CONFIG["strategies"]:
        mine = [r for r in rows if r["strategy"] == strategy]
        assert [int(r["labelled_slices"]) for r in mine] == [4, 6, 8]
        assert [int(r["added_slices"]) for r in mine] == [0, 2, 2]


def test_mac_is_queried_over_added_pixels(result):
    _, rows = result
    for r in rows[1:]:
        if int(r["step"]) == 0:
            assert math.isnan(float(r["mac"])) and int(r["queried_pixels"]) == 0
            continue
        assert int(r["added_pixels"]) == int(r["added_slices"]) * 64 * 64
        assert float(r["mac"]) == pytest.approx(int(r["queried_pixels"]) / int(r["added_pixels"]))
    manual = [r for r in rows if r["strategy"] == "manual" and int(r["step"]) > 0]
    assert all(float(r["mac"]) == 1.0 for r in manual)


def test_random_pixels_query_as_many_pixels_as_tau_at_the_first_step(result):
    _, rows = result
    first = {r["strategy"]: int(r["queried_pixels"]) for r in rows if int(r["step"]) == 1}
    assert first["random_pixels"] == first["tau=2.5e-3"]


def test_it_draws_the_figures_and_the_psv_table(result):
    out, _ = result
    for name in ("dice_vs_step.png", "mac_boxplot.png", "psv_vs_dice.png", "dice_vs_expert_pixels.png"):
        assert (out / name).stat().st_size > 1000
    with (out / "psv_dice.csv").open() as f:
        psv = list(csv.DictReader(f))
    assert psv and all(float(r["psv"]) >= 0 for r in psv)


def test_unknown_keys_and_strategies_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(InvalidSimulationConfig, match="unknown keys"):
        load_simulation_config(bad)
    bad.write_text(json.dumps({"strategies": ["tau"]}))
    with pytest.raises(InvalidSimulationConfig, match="needs a threshold"):
        load_simulation_config(bad)
    bad.write_text(json.dumps({"strategies": ["greedy"]}))
    with pytest.raises(InvalidSimulationConfig, match="unknown strategy"):
        load_simulation_config(bad)
    bad.write_text(json.dumps({"strategies": ["mac=0"]}))
    with pytest.raises(InvalidSimulationConfig, match=r"needs a target MAC in \(0, 1\]"):
        load_simulation_config(bad)


def test_fixed_mac_strategies_map_to_a_target_mac():
    from mltasks.simulate import SimulationConfig, strategy_config

    config = SimulationConfig()
    assert strategy_config("mac=0.05", config) == ("tau", 0.0, 0.05)
    assert strategy_config("random_mac=0.05", config) == ("random_pixels", 0.0, 0.05)
    assert strategy_config("tau=1e-3", config) == ("tau", 1e-3, None)


def test_the_quick_and_full_configurations_parse():
    from mltasks.commands.simulate import QUICK_CONFIG

    quick = load_simulation_config(QUICK_CONFIG)
    full = load_simulation_config(QUICK_CONFIG.with_name("simulation_full.toml"))
    assert quick.steps == 2 and full.steps == 19
    assert "tau=2.5e-3" in full.strategies


def test_run_simulation_rejects_a_bad_training_key(tmp_path):
    cfg = load_simulation_config(_write(tmp_path, {**CONFIG, "training": {"epochs": 3}}))
    with pytest.raises(InvalidSimulationConfig, match="training"):
        run_simulation(cfg, tmp_path / "out")


def _write(folder, data):
    path = folder / "c.json"
    path.write_text(json.dumps(data))
    return path


def test_a_run_stopped_during_step_2_keeps_step_1_of_every_strategy(tmp_path):
    """Steps run outside strategies and the CSV is rewritten after each one, so a
    killed run still compares all strategies at the steps it finished."""
    config = load_simulation_config(_write(tmp_path, CONFIG))

    class Stop(Exception):
        pass

    def stop_at_step_2(progress):
        if progress.phase.startswith("step 2 "):
            raise Stop

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(Stop):
            run_simulation(config, tmp_path / "out", on_progress=stop_at_step_2)
    finally:
        torch.set_num_threads(before)
    with (tmp_path / "out" / "simulation.csv").open() as f:
        rows = [(r["strategy"], int(r["step"])) for r in csv.DictReader(f)]
    first = CONFIG["strategies"][0]  # its step 2 was written just before the report
    assert rows == [(s, step) for s in CONFIG["strategies"] for step in (0, 1, 2) if step < 2 or s == first]
    assert not list((tmp_path / "out").glob("*.partial"))


def test_the_guard_asks_an_untrusted_first_model_for_whole_slices(result):
    _, rows = result
    first = [r for r in rows if r["step"] == "1"]
    assert {r["guard_mode"] for r in first if r["strategy"] != "manual"} == {"whole_slices"}
    assert all(int(r["auto_labelled"]) == 0 and float(r["mac"]) == 1.0 for r in first)


def one_step(folder, **overrides) -> list[dict]:
    """The rows of a one-step, one-strategy (tau) simulation on one torch thread."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "c.json").write_text(json.dumps({**CONFIG, "steps": 1, "strategies": ["tau=2.5e-3"], **overrides}))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_simulation(load_simulation_config(folder / "c.json"), folder / "out").rows
    finally:
        torch.set_num_threads(before)


def test_the_papers_rule_auto_labels_the_unqueried_pixels_and_counts_the_wrong_ones(tmp_path):
    row = one_step(tmp_path, label_rule="paper")[-1]
    assert row["guard_mode"] == "auto_label"
    assert row["auto_labelled"] == row["added_pixels"] - row["queried_pixels"] > 0
    assert 0 <= row["auto_wrong"] <= row["auto_labelled"]


def test_an_unknown_label_rule_is_refused_with_the_choices(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({**CONFIG, "label_rule": "often"}))
    with pytest.raises(InvalidSimulationConfig, match="guard, paper, masked"):
        load_simulation_config(tmp_path / "c.json")


def test_the_guard_decides_on_held_out_slices_that_are_never_selected(tmp_path, monkeypatch):
    import mltasks.simulate as simulate

    offered = []
    real = simulate.propose_queries

    def spy(model, pool, cfg, **kwargs):
        offered.append(pool.labelled.copy())
        return real(model, pool, cfg, **kwargs)

    monkeypatch.setattr(simulate, "propose_queries", spy)
    rows = one_step(tmp_path / "held", held_out_slices=2)
    assert rows[-1]["guard_measured_on"] == "4 held-out slices"  # 2 in each of the 2 pool volumes
    assert rows[-1]["labelled_slices"] == 6  # held-out slices are not counted as labelled
    # 4 seed slices, 4 held out and their neighbours: none of them may be offered.
    assert offered and int((~offered[0]).sum()) < 24 - 4 - 4

    assert one_step(tmp_path / "none", held_out_slices=0)[-1]["guard_measured_on"] == "validation slices"
