"""Model checkpoints: weights plus everything needed to rebuild and use them.

A checkpoint is a dict of tensors and plain values (str, numbers, lists,
dicts), so ``torch.load(path, weights_only=True)`` reads it without running
any pickled code. Keys: ``format``, ``net_config``, ``label_set`` (or None),
``train_config`` (or None), ``model`` (state dict) and, for resumable
training checkpoints, ``optimizer``, ``rng_data``, ``rng_dropout``, ``run``,
``best_model``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mltasks.errors import InvalidCheckpoint
from mltasks.labels import LabelSet
from mltasks.nets import NetConfig, UNet

FORMAT = "myolabel-unet/1"


def save_checkpoint(
    path: str | Path,
    model: UNet,
    *,
    label_set: LabelSet | None = None,
    train_config: Any = None,
    extra: dict | None = None,
) -> None:
    """Write ``model`` (and optional training state in ``extra``) atomically to ``path``."""
    data = {
        "format": FORMAT,
        "net_config": model.config.to_dict(),
        "label_set": label_set.to_dict() if label_set is not None else None,
        "train_config": train_config.to_dict() if train_config is not None else None,
        "model": model.state_dict(),
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
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise InvalidCheckpoint(
            f"{path}: not a readable MyoLabel checkpoint ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidCheckpoint(
            f"{path}: not a MyoLabel U-Net checkpoint (format {FORMAT!r} expected)"
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
