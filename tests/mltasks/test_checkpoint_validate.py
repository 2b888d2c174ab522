"""validate_checkpoint: a start from a previous CT's model, or an upload; every refusal says why."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mltasks.checkpoint import (
    CheckpointArchitectureMismatch,
    CheckpointLabelSetMismatch,
    UnsafeCheckpoint,
    save_checkpoint,
    validate_checkpoint,
)
from mltasks.errors import InvalidCheckpoint
from mltasks.labels import Label, LabelSet, default_label_set
from mltasks.nets import UNet, profile

LABELS = default_label_set()
NET = profile("tiny", n_classes=LABELS.n_classes, width=4, matrix=32)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _saved(tmp_path: Path, *, label_set: LabelSet | None = LABELS, net=NET, **kw) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, UNet(net), label_set=label_set, **kw)
    return path


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class _RunsCode:
    """Unpickling this would create a file: proof that nothing of a refused file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_good_checkpoint_gives_the_model_and_its_provenance(tmp_path):
    path = _saved(tmp_path, provenance={"project": 7, "model_version": 3, "scan": "hip CT 1"})
    model, info = validate_checkpoint(_bytes(path), label_set=LABELS, net_config=NET)
    saved = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert info["provenance"] == {"project": 7, "model_version": 3, "scan": "hip CT 1"}
    assert info["net_config"] == NET.to_dict() and info["weights"] == "last" and not info["training_state"]
    assert not model.training  # MC mode: batch norm in eval mode
    model_from_path, _ = validate_checkpoint(path, label_set=LABELS)
    assert model_from_path.config == NET


def test_random_bytes_are_not_a_checkpoint():
    with pytest.raises(InvalidCheckpoint, match="uploaded checkpoint: not a readable MyoLabel checkpoint"):
        validate_checkpoint(os.urandom(300), label_set=LABELS)


def test_an_empty_upload_is_refused():
    with pytest.raises(InvalidCheckpoint, match="the file is empty"):
        validate_checkpoint(b"", label_set=LABELS)


def test_a_zip_that_is_not_a_checkpoint_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan/readme.txt", "not weights")
    with pytest.raises(InvalidCheckpoint, match="not a readable MyoLabel checkpoint"):
        validate_checkpoint(buffer.getvalue(), label_set=LABELS)


def test_a_checkpoint_with_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    data = {"format": "myolabel-unet/1", "model": _RunsCode(marker)}
    with pytest.raises(UnsafeCheckpoint, match="refused: the file holds pickled code or objects"):
        validate_checkpoint(_torch_bytes(data), label_set=LABELS)
    with pytest.raises(InvalidCheckpoint, match="not a readable MyoLabel checkpoint"):
        validate_checkpoint(pickle.dumps(data), label_set=LABELS)  # a plain pickle, not a torch file
    assert not marker.exists()


def test_a_torch_file_of_another_kind_is_refused():
    with pytest.raises(InvalidCheckpoint, match="not a MyoLabel U-Net checkpoint"):
        validate_checkpoint(_torch_bytes({"state_dict": {}}), label_set=LABELS)


def test_a_renamed_structure_is_named_in_the_refusal(tmp_path):
    other = LabelSet(tuple(replace(lab, name="iliopsoas") if lab.value == 7 else lab for lab in LABELS.labels))
    path = _saved(tmp_path, label_set=other)
    with pytest.raises(CheckpointLabelSetMismatch, match="value 7 is 'iliacus' here but 'iliopsoas' in the checkpoint"):
        validate_checkpoint(_bytes(path), label_set=LABELS)


def test_missing_and_extra_structures_are_named(tmp_path):
    fewer = LabelSet(LABELS.labels[:-1])
    path = _saved(tmp_path, label_set=fewer, net=replace(NET, n_classes=fewer.n_classes))
    with pytest.raises(CheckpointLabelSetMismatch, match="'vastus_medialis' \\(value 22\\) is missing from the checkpoint"):
        validate_checkpoint(_bytes(path), label_set=LABELS)
    more = LabelSet((*LABELS.labels, Label(23, "quadratus_femoris", "muscle", "#123456", "quadratus_femoris", "")))
    path = _saved(tmp_path, label_set=more, net=replace(NET, n_classes=more.n_classes))
    with pytest.raises(CheckpointLabelSetMismatch, match="has 'quadratus_femoris' \\(value 23\\), which this project lacks"):
        validate_checkpoint(_bytes(path), label_set=LABELS)


def test_a_checkpoint_without_a_label_set_is_refused(tmp_path):
    path = _saved(tmp_path, label_set=None)
    with pytest.raises(CheckpointLabelSetMismatch, match="stores no label set"):
        validate_checkpoint(_bytes(path), label_set=LABELS)


def test_another_architecture_is_refused_with_expected_and_found(tmp_path):
    path = _saved(tmp_path)
    wanted = replace(NET, width=8, matrix=64)
    with pytest.raises(CheckpointArchitectureMismatch,
                       match="width 8 expected, 4 in the checkpoint; matrix 64 expected, 32 in the checkpoint"):  # fmt: skip
        validate_checkpoint(_bytes(path), label_set=LABELS, net_config=wanted)


def test_weights_that_do_not_fit_the_named_network_are_refused(tmp_path):
    data = torch.load(_saved(tmp_path), weights_only=True)
    data["model"].pop(next(iter(data["model"])))
    with pytest.raises(CheckpointArchitectureMismatch, match="weights do not fit the network it names"):
        validate_checkpoint(_torch_bytes(data), label_set=LABELS)
    data["model"] = "weights"
    with pytest.raises(InvalidCheckpoint, match="holds no weights"):
        validate_checkpoint(_torch_bytes(data), label_set=LABELS)


def test_a_network_with_too_few_classes_for_the_label_set_is_refused(tmp_path):
    data = torch.load(_saved(tmp_path), weights_only=True)
    data["net_config"]["n_classes"] = 5
    with pytest.raises(CheckpointArchitectureMismatch, match="5 output classes, this label set needs 23"):
        validate_checkpoint(_torch_bytes(data), label_set=LABELS)


def test_non_finite_weights_are_refused(tmp_path):
    data = torch.load(_saved(tmp_path), weights_only=True)
    key = next(k for k, v in data["model"].items() if v.is_floating_point())
    data["model"][key] = data["model"][key] * float("nan")
    with pytest.raises(InvalidCheckpoint, match="NaN or infinite"):
        validate_checkpoint(_torch_bytes(data), label_set=LABELS)


def test_an_oversized_file_is_refused_unread(tmp_path):
    path = _saved(tmp_path)
    with pytest.raises(InvalidCheckpoint, match="more than the 1000 a checkpoint may have"):
        validate_checkpoint(path, label_set=LABELS, max_bytes=1000)
    with pytest.raises(InvalidCheckpoint, match="no such checkpoint file"):
        validate_checkpoint(tmp_path / "missing.pt", label_set=LABELS)


def test_a_training_checkpoint_gives_its_best_weights(tmp_path):
    torch.manual_seed(1)
    best = UNet(NET).state_dict()
    path = tmp_path / "train.pt"
    save_checkpoint(path, UNet(NET), label_set=LABELS, extra={"best_model": best, "optimizer": {}})
    model, info = validate_checkpoint(path, label_set=LABELS)
    assert info["weights"] == "best" and info["training_state"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
