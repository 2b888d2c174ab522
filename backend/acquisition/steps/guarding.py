"""Eq. 7 with a guard, as the selecting phase applies it (``mltasks.guard``, docs/learning.md).

The paper gives every unqueried pixel of a chosen slice the model's label. An
undertrained model is confidently wrong, so the step first decides, from the
current model's Dice on slices held out of its training, what it may do: ask for
whole slices (the model is not trusted yet), auto-label only the classes it has
learnt (and the air outside the body), or, under the project's ``label_rule``,
never ("masked") or always ("paper", to reproduce the paper).

The decision is made once per step and stored on it; each query's stored
prediction already holds the guarded training labels outside the query (``IGNORE``
where untrusted), so the answer, merged later by the web process, gives exactly
the guarded labels. Where the scan has reference labels (simulations, scripted
annotators), the wrong auto-labels are counted too.
"""

from __future__ import annotations

import numpy as np

from backend.acquisition import codec, ml_adapter
from backend.acquisition.selectors import current_model

DEFAULT_RULE = "guard"


def step_guard(step, *, load_model=None, cache=None) -> dict:
    """The guard decision of a step, from the current model's held-out Dice per class.

    An imported model's own validation Dice was measured on another CT: no evidence here.
    With ``load_model`` (version -> (network, pixel mm)) it is measured once on this project's
    training slices, none of which it trained on, before it may auto-label anything.
    """
    project = step.project
    version = current_model(project)
    held_out = version.training.get("val_dice_per_class") if version is not None else None
    if held_out is None and version is not None and version.training.get("imported") and load_model is not None:
        held_out = measure_imported(step, version, load_model, cache)
    rule = (project.network_config or {}).get("label_rule", DEFAULT_RULE)
    return ml_adapter.guard_decision(held_out, rule=rule, strategy=step.strategy)


def measure_imported(step, version, load_model, cache) -> list[float | None] | None:
    """Dice per class of an imported ``version`` on the project's training slices (None where a
    class is absent from them), stored on the version as its validation Dice; None without any."""
    from backend.acquisition.models import TrainingSlice
    from backend.acquisition.steps.scan_inputs import ScanInputs
    from backend.imaging.models import Scan

    rows = list(TrainingSlice.objects.filter(project=step.project).order_by("scan_id", "z"))
    if not rows:
        return None
    model, pixel_mm = load_model(version)
    inputs = ScanInputs(Scan.objects.in_bulk({r.scan_id for r in rows}), pixel_mm=pixel_mm,
                        depth=model.config.depth, cache=cache)
    predicted, answered = [], []
    for scan_id in dict.fromkeys(r.scan_id for r in rows):
        mine = [r for r in rows if r.scan_id == scan_id]
        grid, images, body = inputs(scan_id)
        zs = [r.z for r in mine]
        scored = ml_adapter.score_network_slices(images[zs], body[zs], model, grid, t_samples=step.mc_samples,
                                                 seed=step.pk)
        predicted += [labels.ravel() for labels in scored.labels]
        answered += [codec.unpack_labels(r.labels, (r.height, r.width)).ravel() for r in mine]
    dice = ml_adapter.dice_per_class(np.concatenate(predicted), np.concatenate(answered),
                                     ml_adapter.n_classes_of(step.project.label_set))
    measured = [float(d) if np.isfinite(d) else None for d in dice]
    version.training = {**version.training, "val_dice_per_class": measured, "validation_slices": len(rows),
                        "validation_on": "this project's training slices, before any training on them"}
    version.save(update_fields=["training"])
    return measured


def guarded_predictions(step, guard: dict, chosen: list[tuple[int, int]], labels: list[np.ndarray],
                        masks: list[np.ndarray]) -> list[tuple[np.ndarray, int, int | None]]:
    """Per chosen (scan id, z): (stored prediction, auto-labelled pixels, wrong ones or None)."""
    from backend.imaging.models import ReferenceLabelMap, Scan

    version = current_model(step.project)
    pixel_mm = ml_adapter.model_pixel_mm(version.config) if version is not None else None
    scans = Scan.objects.in_bulk({scan_id for scan_id, _ in chosen})
    refs = {ref.scan_id: ref for ref in ReferenceLabelMap.objects.filter(
        scan_id__in=scans, label_set=step.project.label_set)}
    out = []
    for (scan_id, z), predicted, mask in zip(chosen, labels, masks, strict=True):
        scan = scans[scan_id]
        ref = refs.get(scan_id)
        reference = (np.asarray(ml_adapter.reference_labels(ref)[z])
                     if ref is not None and z in set(ref.labelled_slices) else None)
        scale = pixel_mm / scan.geometry["spacing"][1] if pixel_mm else 1.0
        out.append(ml_adapter.guard_query(predicted, mask, np.asarray(ml_adapter.scan_hu(scan)[z]), guard,
                                          pixel_scale=scale, reference=reference))
    return out


def guarded_masks(masks: list[np.ndarray], guard: dict) -> list[np.ndarray]:
    """Whole slices while the model is not trusted; else the strategy's masks."""
    if guard.get("mode") == "whole_slices":
        return [np.ones_like(m, dtype=bool) for m in masks]
    return masks
