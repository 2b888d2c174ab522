"""A start from nothing: a project whose pool holds no label and that has no model.

Without a model there is no uncertainty to rank by, so the first step's inferring
phase picks ``slices_per_step`` representative acquired slices by their images alone
(``mltasks.coldstart``: area-averaged thumbnails of each slice on the network grid,
centred on the scan's mean slice, then D_r's greedy set cover with no two picks next
to each other) and its selecting phase asks for them whole. The first model trains
on the answers in the step's training phase, with the first model's budget.

Each scan's descriptors are centred on that scan's own mean slice: scans of a pool
differ in size and field of view, and a lab's first project usually has one CT.
"""

from __future__ import annotations

import numpy as np

from backend.acquisition import codec, ml_adapter
from backend.acquisition.models import Query, TrainingSlice
from backend.acquisition.selectors import current_model, pool_scans
from backend.acquisition.steps.scan_inputs import ScanInputs

REASON = "no labels and no model yet: representative slices chosen from the images alone, asked for whole"


def needs_cold_start(project) -> bool:
    """True when the project has neither a model nor a training slice."""
    return current_model(project) is None and not TrainingSlice.objects.filter(project=project).exists()


def cold_start_slices(step, *, cache, excluded: set[tuple[int, int]] = frozenset()) -> list[list[int]]:
    """[scan id, z] of the slices step 1 asks for first, in the order chosen."""
    project = step.project
    net_cfg, _ = ml_adapter.network_configs(project.network_profile, project.network_config,
                                            ml_adapter.n_classes_of(project.label_set))
    scans = {scan.id: scan for scan in pool_scans(project)}
    inputs = ScanInputs(scans, pixel_mm=ml_adapter.pixel_mm_of(project.network_profile, project.network_config),
                        depth=net_cfg.depth, cache=cache)
    features, keys = [], []
    for scan_id, scan in scans.items():
        _, images, _ = inputs(scan_id)
        features.append(ml_adapter.cold_start_descriptors(images))
        keys += [(scan_id, z) for z in range(scan.shape[0])]
    if not keys:
        raise ValueError("the project's pools hold no ready scan; import a CT first")
    keys_arr = np.array(keys, dtype=np.int64)
    exclude = [i for i, key in enumerate(keys) if key in excluded]
    chosen = ml_adapter.cold_start_cover(np.concatenate(features), step.slices_per_step, keys=keys_arr,
                                         exclude=exclude)
    return [[int(keys_arr[i][0]), int(keys_arr[i][1])] for i in chosen]


def cold_start_queries(step, chosen: list[list[int]]) -> list[Query]:
    """Whole-slice queries of the chosen slices: nothing predicted, nothing auto-labelled."""
    from backend.imaging.models import Scan

    scans = Scan.objects.in_bulk({scan_id for scan_id, _ in chosen})
    queries = []
    for scan_id, z in chosen:
        h, w = scans[scan_id].shape[1:]
        queries.append(Query(step=step, scan_id=scan_id, z=z, height=h, width=w,
                             mask=codec.pack_mask(np.ones((h, w), bool)),
                             predicted=codec.pack_labels(np.full((h, w), ml_adapter.IGNORE, np.uint8)),
                             uncertainty=codec.pack_float16(np.zeros((h, w), np.float32)),
                             n_queried=h * w, n_pixels=h * w))
    return queries


def cold_start_guard(project) -> dict:
    rule = (project.network_config or {}).get("label_rule", "guard")
    return {"mode": "whole_slices", "trusted": [], "reason": REASON, "boundary_margin": 0,
            "background_outside_body": False, "rule": rule}
