"""A start from a previous CT: checkpoints of imported models (``outputs.model_import``)."""

from __future__ import annotations

from pathlib import Path

from backend.acquisition.ml_adapter.core import label_set_of, save_model
from mltasks.checkpoint import (
    CheckpointArchitectureMismatch,
    CheckpointLabelSetMismatch,
    UnsafeCheckpoint,
    label_set_differences,
    validate_checkpoint,
)
from mltasks.errors import InvalidCheckpoint
from mltasks.nets import NetConfig, UNet
from mltasks.train import TrainConfig


class CheckpointRefused(Exception):  # noqa: N818
    """A checkpoint from elsewhere was refused; ``code`` says why for the API, the message for a person."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


# Most specific first: every refusal is an InvalidCheckpoint.
_REFUSAL_CODES = ((UnsafeCheckpoint, "unsafe_checkpoint"), (CheckpointLabelSetMismatch, "label_set_mismatch"),
                  (CheckpointArchitectureMismatch, "architecture_mismatch"), (InvalidCheckpoint, "not_a_checkpoint"))
_UPLOAD_NAME = "uploaded checkpoint"  # how validate_checkpoint names bytes in its messages


def checkpoint_validate(raw: bytes, *, name: str, django_label_set, net_config: NetConfig,
                        max_bytes: int) -> tuple[UNet, dict]:
    """``validate_checkpoint`` of a file's bytes (weights only) against a project's label set
    and network; (model, info) or CheckpointRefused naming ``name`` (the file) in its message."""
    try:
        return validate_checkpoint(bytes(raw), label_set=label_set_of(django_label_set), net_config=net_config,
                                   max_bytes=max_bytes)
    except InvalidCheckpoint as exc:
        message = str(exc)
        if message.startswith(_UPLOAD_NAME):  # the person knows the file by its name, not as "uploaded checkpoint"
            message = name + message[len(_UPLOAD_NAME):]
        code = next(code for kind, code in _REFUSAL_CODES if isinstance(exc, kind))
        raise CheckpointRefused(message, code) from None


def label_set_changes(expected, found) -> list[str]:
    """How ``found``'s (value, name) pairs differ from ``expected``'s (two ``projects.LabelSet`` rows)."""
    return label_set_differences(label_set_of(expected), label_set_of(found))


def save_imported_model(path: str | Path, model: UNet, *, django_label_set, train_config: dict | None,
                        provenance: dict) -> None:
    """Write an imported network in the registry's own format (weights only, with provenance)."""
    try:
        train = TrainConfig.from_dict(dict(train_config)) if train_config else None
    except (TypeError, ValueError):  # another version's training options: kept in ModelVersion.config only
        train = None
    save_model(path, model, label_set=label_set_of(django_label_set), train_config=train, provenance=provenance)
