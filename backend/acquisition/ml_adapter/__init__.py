"""The one adapter between the acquisition app and the ML library ``mltasks``.

Everything numerical (MC dropout, slice scores, D_c / D_r selection, pixel
queries, MAC, training, metrics, PSV, PDC, reports) is done by ``mltasks``;
this package only converts between the working grid (the stored scans, H x W
slices) and the network matrix, and between Django rows and library objects.
No other module of the app imports ``mltasks``.

Working grid vs network: scans are stored on their working grid (``mltasks.grid``:
the acquired slices, the body's box, the scan's own pixels); the network runs on
a resampled copy of each slice at the pixel size of the model (``mltasks.netgrid``:
the profile's ``PROFILE_PIXEL_MM``, recorded on every model version). Images go
down area-averaged; mean probabilities and uncertainty come back bilinearly, so
labels, queries and exports stay at the scan's full in-plane resolution.

The package re-exports every adapter function, so callers (and tests that patch one)
use ``ml_adapter.<name>``: ``core`` (grids, configuration, models, the step,
evaluation, files), ``guard`` (Eq. 7's guard, the cold start), ``checkpoints``
(imported models) and ``biomech`` (meshes, the atrophy and fat report, Slicer files).
"""

from backend.acquisition.ml_adapter.biomech import (
    FAT_HU,
    MESH_SPACES,
    REPORT_COLUMNS,
    LabelMapRefused,
    UnmappedSegments,
    check_fat_range,
    meshes_zip,
    muscle_csv,
    muscle_figure,
    muscle_rows,
    seg_nrrd_bytes,
    seg_nrrd_onto,
    structure_meshes,
)
from backend.acquisition.ml_adapter.checkpoints import (
    CheckpointRefused,
    checkpoint_validate,
    label_set_changes,
    save_imported_model,
)
from backend.acquisition.ml_adapter.core import (
    IGNORE,
    PROFILE_PIXEL_MM,
    TRAINING_BUDGETS,
    MyoLabelError,
    NetworkGrid,
    SliceRanking,
    calibration_fit,
    calibration_held_out_mae,
    choose_slices,
    chosen_maps,
    dice_per_class,
    evaluate,
    label_set_of,
    load_model,
    merge,
    model_pixel_mm,
    n_classes_of,
    network_configs,
    network_grid,
    network_inputs,
    phantom_volume,
    pixel_mm_of,
    planned_passes,
    predicted_dice,
    preview_tau,
    psv,
    query_masks,
    rank_pool,
    reference_labels,
    report_rows,
    save_model,
    scan_hu,
    score_network_slices,
    segment_slices,
    segment_volume,
    step_plan,
    train_model,
    training_budget,
    write_dicom_ct,
    write_nifti,
)
from backend.acquisition.ml_adapter.guard import (
    LABEL_RULES,
    cold_start_cover,
    cold_start_descriptors,
    guard_decision,
    guard_query,
)

__all__ = [  # noqa: RUF022  (grouped by submodule)
    "calibration_fit",
    "calibration_held_out_mae",
    "choose_slices",
    "chosen_maps",
    "evaluate",
    "IGNORE",
    "label_set_of",
    "load_model",
    "merge",
    "model_pixel_mm",
    "MyoLabelError",
    "n_classes_of",
    "network_configs",
    "network_grid",
    "network_inputs",
    "NetworkGrid",
    "phantom_volume",
    "pixel_mm_of",
    "planned_passes",
    "predicted_dice",
    "preview_tau",
    "PROFILE_PIXEL_MM",
    "psv",
    "query_masks",
    "rank_pool",
    "reference_labels",
    "report_rows",
    "save_model",
    "scan_hu",
    "dice_per_class",
    "score_network_slices",
    "segment_slices",
    "segment_volume",
    "SliceRanking",
    "step_plan",
    "train_model",
    "training_budget",
    "TRAINING_BUDGETS",
    "write_dicom_ct",
    "write_nifti",
    "LABEL_RULES",
    "cold_start_cover",
    "cold_start_descriptors",
    "guard_decision",
    "guard_query",
    "CheckpointRefused",
    "checkpoint_validate",
    "label_set_changes",
    "save_imported_model",
    "FAT_HU",
    "MESH_SPACES",
    "REPORT_COLUMNS",
    "LabelMapRefused",
    "UnmappedSegments",
    "check_fat_range",
    "meshes_zip",
    "muscle_csv",
    "muscle_figure",
    "muscle_rows",
    "seg_nrrd_bytes",
    "seg_nrrd_onto",
    "structure_meshes",
]
