"""Model checkpoints: weights plus everything needed to rebuild and use them.

A checkpoint is a dict of tensors and plain values (str, numbers, lists,
dicts), so ``torch.load(path, weights_only=True)`` reads it without running
any pickled code. Keys: ``format``, ``net_config``, ``label_set`` (or None),
``train_config`` (or None), ``provenance`` (or absent: where the model came
from), ``model`` (state dict) and, for resumable training checkpoints,
``optimizer``, ``rng_data``, ``rng_dropout``, ``run``, ``best_model``.

``validate_checkpoint`` checks a checkpoint from elsewhere (an upload, another
project's model) before anything of it is stored or used: readable with
``weights_only=True`` only, the MyoLabel format, the project's label set, the
expected architecture, weights that fit it and are finite. Each refusal raises
a subclass of ``InvalidCheckpoint`` whose message says what differs.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from mltasks.errors import InvalidCheckpoint
from mltasks.labels import LabelSet
from mltasks.nets import NetConfig, UNet


class UnsafeCheckpoint(InvalidCheckpoint):
    """The file holds pickled code or objects other than tensors and plain values."""


class CheckpointLabelSetMismatch(InvalidCheckpoint):
    """The checkpoint's label set differs from the project's (names or values)."""


class CheckpointArchitectureMismatch(InvalidCheckpoint):
    """The checkpoint's network differs from the expected one, or its weights do not fit it."""

FORMAT = "myolabel-unet/1"


def save_checkpoint(
    path: str | Path,
    model: UNet,
    *,
    label_set: LabelSet | None = None,
    train_config: Any = None,
    provenance: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``model`` (and optional training state in ``extra``) atomically to ``path``.

    ``provenance``: plain values saying where the model came from (project, model
    version, source checkpoint, ...); ``validate_checkpoint`` returns it.
    """
    data = {
        "format": FORMAT,
        "net_config": model.config.to_dict(),
        "label_set": label_set.to_dict() if label_set is not None else None,
        "train_config": train_config.to_dict() if train_config is not None else None,
        "model": model.state_dict(),
        **({"provenance": dict(provenance)} if provenance is not None else {}),
        **(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidCheckpoint(
            f"{path}: no such checkpoint file; train a model first or check the path"
        )
    return _read(path, str(path))


def _read(source: Path | io.BytesIO, name: str) -> dict:
    """The checkpoint dict of a file or bytes, loaded with ``weights_only=True`` only."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; we refuse them anyway
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc), flags=re.IGNORECASE)
        if found:  # torch's own advice (load without weights_only) must not reach the user
            msg = (f"{name}: refused: the file holds pickled code or objects ({found.group(1)}), "
                   "not only weights; MyoLabel loads weights only and ran nothing of it")  # fmt: skip
            raise UnsafeCheckpoint(msg) from None
        raise InvalidCheckpoint(f"{name}: not a readable MyoLabel checkpoint (not a PyTorch file)") from None
    except Exception as exc:  # torch raises several types for foreign or damaged files
        reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise InvalidCheckpoint(f"{name}: not a readable MyoLabel checkpoint ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidCheckpoint(
            f"{name}: not a MyoLabel U-Net checkpoint (format {FORMAT!r} expected)"
        )
    return data


def load_model(path: str | Path, *, best: bool = True) -> tuple[UNet, LabelSet | None]:
    """Rebuild the network of a checkpoint, in inference (MC) mode.

    Args:
        best: use the best-validation weights when the checkpoint has them.
    Returns:
        (model, label_set or None).
    """
    data = load_checkpoint(path)
    model = UNet(NetConfig.from_dict(data["net_config"]))
    weights = (
        data.get("best_model") if best and data.get("best_model") is not None else data["model"]
    )
    model.load_state_dict(weights)
    model.mc_mode()
    label_set = LabelSet.from_dict(data["label_set"]) if data.get("label_set") else None
    return model, label_set


MAX_CHECKPOINT_BYTES = 2**30


def validate_checkpoint(
    source: str | Path | bytes,
    *,
    label_set: LabelSet,
    net_config: NetConfig | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> tuple[UNet, dict]:
    """Check a checkpoint from elsewhere and rebuild its network, or refuse it with the reason.

    Args:
        source: a path or the file's bytes (an upload, before it is stored).
        label_set: the project's label set; the checkpoint's must have the same
            (value, name) pairs.
        net_config: the architecture the project expects; None accepts the stored one
            as long as its classes fit ``label_set``.
        max_bytes: larger files are refused unread.
    Returns:
        (the network with the best-validation weights, or the last ones, in MC mode;
        info: format, net_config, label_set, train_config, provenance (dicts or None),
        weights ("best" or "last"), training_state (bool)).
    Raises:
        InvalidCheckpoint: not a readable MyoLabel checkpoint, too large, malformed.
        UnsafeCheckpoint: pickled code or objects (never run).
        CheckpointLabelSetMismatch: label names or values differ (the message lists them).
        CheckpointArchitectureMismatch: other architecture, or weights that do not fit it.
    """
    name, stream = _source(source, max_bytes)
    data = _read(stream, name)
    stored = _stored_label_set(data, name)
    differences = label_set_differences(label_set, stored)
    if differences:
        raise CheckpointLabelSetMismatch(f"{name}: its label set differs from this project's: {'; '.join(differences)}")
    config = _stored_net_config(data, name)
    _check_architecture(config, net_config, label_set, name)
    best = data.get("best_model") is not None
    model = _load_weights(config, data["best_model"] if best else data.get("model"), name)
    info = {
        "format": data["format"], "net_config": config.to_dict(), "label_set": stored.to_dict(),
        "train_config": data.get("train_config"), "provenance": data.get("provenance"),
        "weights": "best" if best else "last", "training_state": "optimizer" in data,
    }  # fmt: skip
    return model, info


def _source(source: str | Path | bytes, max_bytes: int) -> tuple[str, io.BytesIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        name, raw = "uploaded checkpoint", bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidCheckpoint(f"{path}: no such checkpoint file; check the path")
        if path.stat().st_size > max_bytes:
            raise InvalidCheckpoint(f"{path}: {path.stat().st_size} bytes, more than the {max_bytes} a checkpoint may have")
        name, raw = str(path), path.read_bytes()
    if len(raw) > max_bytes:
        raise InvalidCheckpoint(f"{name}: {len(raw)} bytes, more than the {max_bytes} a checkpoint may have")
    if not raw:
        raise InvalidCheckpoint(f"{name}: the file is empty; upload a MyoLabel checkpoint (.pt)")
    return name, io.BytesIO(raw)


def _stored_label_set(data: dict, name: str) -> LabelSet:
    if not data.get("label_set"):
        raise CheckpointLabelSetMismatch(f"{name}: stores no label set, so it cannot be matched to this project's")
    try:
        return LabelSet.from_dict(data["label_set"])
    except (TypeError, KeyError, AttributeError) as exc:
        raise InvalidCheckpoint(f"{name}: its label set is malformed ({exc})") from None


def label_set_differences(expected: LabelSet, stored: LabelSet, *, limit: int = 5) -> list[str]:
    """Sentences naming how ``stored``'s (value, name) pairs differ from ``expected``'s (at most ``limit``)."""
    want = {lab.value: lab.name for lab in expected.labels}
    got = {lab.value: lab.name for lab in stored.labels}
    out = []
    for value in sorted(set(want) | set(got)):
        if value not in got:
            out.append(f"{want[value]!r} (value {value}) is missing from the checkpoint")
        elif value not in want:
            out.append(f"the checkpoint has {got[value]!r} (value {value}), which this project lacks")
        elif want[value] != got[value]:
            out.append(f"value {value} is {want[value]!r} here but {got[value]!r} in the checkpoint")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more differences"]
    return out


def _stored_net_config(data: dict, name: str) -> NetConfig:
    try:
        config = NetConfig.from_dict(dict(data["net_config"]))
        config.validate()
    except Exception as exc:  # missing key, unknown field, bad value
        raise InvalidCheckpoint(f"{name}: its network configuration is missing or malformed ({exc})") from None
    return config


def _check_architecture(config: NetConfig, expected: NetConfig | None, label_set: LabelSet, name: str) -> None:
    n_classes = max((lab.value for lab in label_set.labels), default=0) + 1
    if expected is None:
        if config.n_classes != n_classes:
            raise CheckpointArchitectureMismatch(
                f"{name}: the network has {config.n_classes} output classes, this label set needs {n_classes}"
            )
        return
    got, want = config.to_dict(), expected.to_dict()
    diffs = [f"{key} {want[key]} expected, {got[key]} in the checkpoint" for key in want if got[key] != want[key]]
    if diffs:
        raise CheckpointArchitectureMismatch(f"{name}: other network architecture: {'; '.join(diffs)}")


def _load_weights(config: NetConfig, weights: Any, name: str) -> UNet:
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InvalidCheckpoint(f"{name}: holds no weights (a state dict of tensors under 'model')")
    model = UNet(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointArchitectureMismatch(f"{name}: its weights do not fit the network it names ({reason})") from None
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InvalidCheckpoint(f"{name}: weights hold NaN or infinite values ({', '.join(bad[:3])}); retrain the model")
    return model.mc_mode()
