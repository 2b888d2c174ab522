"""Figure of one phantom: axial slices at thigh, hip-joint and pelvis level and a coronal view,
each beside its label overlay.

    python docs/scripts/phantom_figure.py [--seed 3] [--out docs/phantom.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgb  # noqa: E402

from mltasks.phantom import generate_phantom  # noqa: E402


def _colours(label_set) -> ListedColormap:
    cols = [(0, 0, 0, 0)] + [(*to_rgb(lab.colour), 0.55) for lab in label_set.labels]
    return ListedColormap(cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(200, 256, 256), metavar=("Z", "Y", "X"))
    ap.add_argument("--out", type=Path, default=Path("docs/phantom.png"))
    ap.add_argument("--no-calibration-phantom", dest="calibration_phantom", action="store_false",
                    help="leave out the calibration block (shown by default)")
    args = ap.parse_args()
    ph = generate_phantom(args.seed, shape=tuple(args.shape), calibration_phantom=args.calibration_phantom, streaks=False)
    sz = ph.geometry.spacing[0]
    z0 = ph.geometry.origin[2]
    head = ph.params.head_level
    levels = {"thigh": head - 150, "hip joint": head, "pelvis": head + 60}
    cmap = _colours(ph.label_set)
    nlab = ph.label_set.n_classes
    fig, axes = plt.subplots(4, 2, figsize=(10, 19))
    window = dict(cmap="gray", vmin=-200, vmax=300)
    for row, (name, z) in enumerate(levels.items()):
        k = int(round((z - z0) / sz))
        for col in range(2):
            ax = axes[row, col]
            ax.imshow(ph.hu[k], **window)
            if col:
                ax.imshow(ph.labels[k], cmap=cmap, vmin=0, vmax=nlab - 1, interpolation="nearest")
            ax.set_title(f"{name} (slice {k}, {z - head:+.0f} mm from head centre)" + (" + labels" if col else ""), fontsize=9)
            ax.axis("off")
    fem = ph.labels == ph.label_set.value_of("femur")
    y_head = int(np.median(np.nonzero(fem[int(round((head - z0) / sz))])[0]))
    aspect = sz / ph.geometry.spacing[1]
    for col in range(2):
        ax = axes[3, col]
        ax.imshow(ph.hu[::-1, y_head, :], aspect=aspect, **window)
        if col:
            ax.imshow(ph.labels[::-1, y_head, :], aspect=aspect, cmap=cmap, vmin=0, vmax=nlab - 1, interpolation="nearest")
        ax.set_title(f"coronal through the femoral heads (row {y_head})" + (" + labels" if col else ""), fontsize=9)
        ax.axis("off")
    fig.suptitle(f"MyoLabel synthetic hip-and-thigh CT, seed {args.seed}, {args.shape} voxels, W500/L50", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
