"""Writing phantoms to disk, and a cache of generated data sets for the demo and simulation."""

from __future__ import annotations

import json
from pathlib import Path

from mltasks.phantom.generate import Phantom, generate_phantom
from mltasks.progress import ProgressCallback, report


def write_phantom(ph: Phantom, out_dir: str | Path, name: str, *, dicom: bool = False) -> dict[str, Path]:
    """Write ``<name>_ct.nii.gz`` and ``<name>_labels.nii.gz`` (and a DICOM series folder on request).

    Returns:
        Paths by kind: "ct", "labels" and, with ``dicom``, "dicom" (a folder).
    """
    import SimpleITK as sitk

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"ct": out_dir / f"{name}_ct.nii.gz", "labels": out_dir / f"{name}_labels.nii.gz"}
    sitk.WriteImage(ph.geometry.to_sitk(ph.hu), str(paths["ct"]), useCompression=True)
    sitk.WriteImage(ph.geometry.to_sitk(ph.labels), str(paths["labels"]), useCompression=True)
    meta = {"seed": ph.params.seed, "geometry": ph.geometry.to_dict(), "label_set": ph.label_set.to_dict()}
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1))
    if dicom:
        from pydicom.uid import generate_uid

        from mltasks.io import write_dicom_series

        paths["dicom"] = out_dir / f"{name}_dicom"
        seed = ph.params.seed
        write_dicom_series(
            ph.hu, ph.geometry, paths["dicom"],
            series_description=f"MyoLabel phantom {seed}",
            patient_id=f"PHANTOM{seed:06d}",
            series_uid=generate_uid(entropy_srcs=["myolabel-phantom-series", str(seed), str(ph.geometry.shape)]),
            study_uid=generate_uid(entropy_srcs=["myolabel-phantom-study", str(seed)]),
        )
    return paths


def phantom_dataset(
    n: int,
    *,
    size: tuple[int, int, int] = (200, 256, 256),
    seed: int = 0,
    cache_dir: str | Path,
    sided: bool = False,
    calibration_phantom: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[tuple[Path, Path]]:
    """Generate-or-reuse ``n`` phantoms (seeds seed .. seed + n - 1) as NIfTI in ``cache_dir``.

    Files are named after seed, shape and options, so another request never
    reuses a file made with other parameters.

    Args:
        size: (z, y, x) voxels.
    Returns:
        [(ct_path, labels_path)] in seed order.
    """
    cache = Path(cache_dir)
    tag = "x".join(str(v) for v in size) + ("_sided" if sided else "") + ("_cal" if calibration_phantom else "")
    out = []
    for i in range(n):
        name = f"phantom_{seed + i:05d}_{tag}"
        ct, lab = cache / f"{name}_ct.nii.gz", cache / f"{name}_labels.nii.gz"
        if not (ct.is_file() and lab.is_file()):
            ph = generate_phantom(seed + i, shape=size, sided=sided, calibration_phantom=calibration_phantom)
            write_phantom(ph, cache, name)
        out.append((ct, lab))
        report(on_progress, "phantom_dataset", i + 1, n)
    return out
