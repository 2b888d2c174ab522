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
from backend.acquisition.held_out.selectors import held_out_by_scan
from backend.acquisition.models import HeldOutSlice, TrainingSlice
from backend.acquisition.selectors import current_model
from backend.acquisition.steps.evaluation import pooled_dice

DEFAULT_RULE = "guard"


def step_guard(step, *, load_model=None, cache=None) -> dict:
    """The guard decision of a step, from the current model's Dice per class on slices it never
    trained on (``guard_evidence``); the dict says which (``measured_on``)."""
    project = step.project
    version = current_model(project)
    dice, measured_on = guard_evidence(step, version, load_model, cache) if version is not None else (None, None)
    rule = (project.network_config or {}).get("label_rule", DEFAULT_RULE)
    return {**ml_adapter.guard_decision(dice, rule=rule, strategy=step.strategy), "measured_on": measured_on}


def guard_evidence(step, version, load_model, cache) -> tuple[list[float | None] | None, str | None]:
    """(Dice per class, what it was measured on) that the guard may trust, best first:

    1. the project's held-out slices (with ``load_model``), measured once per version (by the
       evaluating phase of the step that trained it, or here for model 0 and imports): several
       slices spread over the scan, never trained on. The training's validation set of a 5 %
       seed is one or two slices: a noisy figure for a decision worth a million expert pixels
       (docs/learning.md, "The loop on a CT-sized phantom");
    2. the version's own validation Dice from its training;
    3. an imported model, whose validation Dice comes from another CT: the project's training
       slices, none of which it trained on, measured once (with ``load_model``).
    """
    training = version.training or {}
    if load_model is not None and training.get("held_out_dice_per_class") is not None:
        return training["held_out_dice_per_class"], f"{training['held_out_slices']} held-out slices"
    if load_model is not None and HeldOutSlice.objects.filter(project=step.project).exists():
        dice, n = _measure(step, version, _held_out_truth(step.project), load_model, cache)
        version.training = {**training, "held_out_dice_per_class": dice, "held_out_slices": n}
        version.save(update_fields=["training"])
        return dice, f"{n} held-out slices"
    if training.get("val_dice_per_class") is not None:
        return training["val_dice_per_class"], f"{training.get('validation_slices')} validation slices"
    if training.get("imported") and load_model is not None:
        return measure_imported(step, version, load_model, cache), "this project's training slices"
    return None, None


def adaptation_verdict(step, imported, adapted_model, pixel_mm, *, load_model) -> dict | None:
    """Whether an import's adaptation to the project's labelled slices replaces it: fitted to a
    seed of a few slices, it can score lower on this CT than the import did (docs/learning.md).
    Both are measured on the project's held-out slices (mean Dice over the structures); the
    import is kept when the adaptation scores lower. None without held-out slices (the adaptation
    is kept, unjudged). The dict holds both means, what was kept and the adapted model's Dice per
    class (``adapted_per_class``, ``held_out_slices``) for its version."""
    if load_model is None or not HeldOutSlice.objects.filter(project=step.project).exists():
        return None
    before, _ = guard_evidence(step, imported, load_model, None)
    after, n = _measure(step, imported, _held_out_truth(step.project), lambda _v: (adapted_model, pixel_mm), None)
    means = [float(np.mean([d for d in dice[1:] if d is not None] or [0.0])) for dice in (before, after)]
    return {"kept": "imported" if means[1] < means[0] else "adapted", "imported_dice": round(means[0], 4),
            "adapted_dice": round(means[1], 4), "measured_on": f"{n} held-out slices",
            "adapted_per_class": after, "held_out_slices": n}


def measure_imported(step, version, load_model, cache) -> list[float | None] | None:
    """Dice per class of an imported ``version`` on the project's training slices (None where a
    class is absent from them), stored on the version as its validation Dice; None without any."""
    rows = list(TrainingSlice.objects.filter(project=step.project).order_by("scan_id", "z"))
    if not rows:
        return None
    truth = {}
    for row in rows:
        truth.setdefault(row.scan_id, []).append((row.z, codec.unpack_labels(row.labels, (row.height, row.width))))
    measured, _ = _measure(step, version, truth, load_model, cache)
    version.training = {**version.training, "val_dice_per_class": measured, "validation_slices": len(rows),
                        "validation_on": "this project's training slices, before any training on them"}
    version.save(update_fields=["training"])
    return measured


def _held_out_truth(project) -> dict[int, list[tuple[int, np.ndarray]]]:
    """{scan id: [(z, reference labels (H, W))]} of the project's held-out slices."""
    from backend.imaging.models import ReferenceLabelMap

    by_scan = held_out_by_scan(project)
    refs = ReferenceLabelMap.objects.filter(scan_id__in=list(by_scan), label_set=project.label_set)
    truth = {}
    for ref in refs:
        labels = ml_adapter.reference_labels(ref)
        truth[ref.scan_id] = [(z, np.asarray(labels[z])) for z in by_scan[ref.scan_id]]
    return truth


def _measure(step, version, truth: dict[int, list[tuple[int, np.ndarray]]], load_model,
             cache) -> tuple[list[float | None], int]:
    """(Dice per class of ``version`` on the slices of ``truth``, pixels of all slices together,
    None where a class is absent from both; number of slices)."""
    from backend.acquisition.steps.scan_inputs import ScanInputs
    from backend.imaging.models import Scan

    model, pixel_mm = load_model(version)
    inputs = ScanInputs(Scan.objects.in_bulk(list(truth)), pixel_mm=pixel_mm, depth=model.config.depth, cache=cache)
    predicted, answered = [], []
    for scan_id, slices in truth.items():
        grid, images, body = inputs(scan_id)
        zs = [z for z, _ in slices]
        scored = ml_adapter.score_network_slices(images[zs], body[zs], model, grid, t_samples=step.mc_samples,
                                                 seed=step.pk)
        predicted += list(scored.labels)
        answered += [labels for _, labels in slices]
    return pooled_dice(predicted, answered, ml_adapter.n_classes_of(step.project.label_set)), len(answered)


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
