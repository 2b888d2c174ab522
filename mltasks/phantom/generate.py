"""The phantom generator's entry point: ``generate_phantom(seed, ...) -> Phantom``."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

from mltasks.geometry import Geometry
from mltasks.labels import LabelSet, default_label_set
from mltasks.phantom import anatomy, intensity
from mltasks.phantom.arms import add_arms, sample_arms
from mltasks.phantom.intensity import upsample
from mltasks.phantom.params import SIDES, PatientParams, sample_params
from mltasks.phantom.slices import SideModel, SiteInfo, leg_to_hip, rasterise
from mltasks.phantom.tissue import T
from mltasks.progress import ProgressCallback, report

FOV_MM = 380.0  # default in-plane field of view
Z_EXTENT_MM = 290.0  # default z extent: mid-thigh to just above the iliac crest
TABLE_RADIUS = 700.0  # curvature of the scan table
BONE_NAMES = {1: "pelvis", 2: "femur", 3: "sacrum"}


@dataclass
class Phantom:
    """One synthetic hip-and-thigh CT with its exact labels.

    Attributes:
        hu: (z, y, x) int16 CT numbers.
        labels: (z, y, x) uint8 values of ``label_set`` (0 background).
        body: (z, y, x) bool, inside the skin.
        geometry: spacing (z, y, x) mm, LPS origin and direction (identity).
        label_set: the default label set, shared or sided.
        hu_clean: (z, y, x) float32 tissue model before blur, noise and streaks.
        tissue: (z, y, x) uint8 ``tissue.T`` class of every voxel.
        params: the random patient parameters.
    """

    hu: np.ndarray
    labels: np.ndarray
    body: np.ndarray
    geometry: Geometry
    label_set: LabelSet
    hu_clean: np.ndarray
    tissue: np.ndarray
    params: PatientParams


def site_list() -> list[SiteInfo]:
    """Every site of ``anatomy.SITES`` in order; site i is stored as i + 1 in the site volume."""
    names = [n for n in anatomy.SITES if anatomy.SITES[n][0] == "muscle" and "@" not in n]
    out = []
    for name, (kind, frame, _) in anatomy.SITES.items():
        base = name.split("@")[0]
        label = base if kind == "muscle" else ""
        pair = names.index(base) if label else len(names) + ("other", "vessel", "cavity").index(kind)
        out.append(SiteInfo(name=name, kind=kind, frame=frame, label=label, pair_index=pair))
    return out


def _side_models(p: PatientParams, sites: list[SiteInfo]) -> list[SideModel]:
    models = []
    for j, sp in enumerate(p.sides):
        tracks = []
        for site in sites:
            size = p.muscle_bulk * sp.muscle_size[site.label] if site.label else 1.0
            if site.kind == "other":
                size = p.muscle_bulk
            tracks.append(anatomy.track(anatomy.SITES[site.name][2], sp.head_x, size))
        models.append(SideModel(
            sign=(-1, 1)[j], size=p.scale * sp.size, head_x=sp.head_x, sp=sp, tracks=tracks,
            thigh=anatomy.outline_track(_bulk(anatomy.THIGH, p.muscle_bulk)),
            buttock=anatomy.outline_track(_bulk(anatomy.BUTTOCK, p.muscle_bulk)),
        ))
    return models


def _body_box(models: list[SideModel], trunk: anatomy.Track, p: PatientParams, z: float, xs: np.ndarray,
              ys: np.ndarray, halves: tuple[slice, slice]) -> tuple[slice, list[slice]]:
    """Rows and, per side, columns that can hold body on this slice (a safe bounding box)."""
    margin = 10.0 + float(np.abs(p.deform[:, :, 0]).sum(axis=1).max()) + p.fat_mm * (1 + 1.2 * p.fat_posterior) * 1.2
    x_mid, y_head = p.shift[0], p.head_y + p.shift[1]
    y_lo, y_hi, x_ranges = np.inf, -np.inf, []
    hm = (z - p.head_level) / p.scale
    t = trunk.at(hm)
    for m in models:
        h = (z - p.head_level) / m.size
        lo, hi = np.inf, -np.inf
        for tr, leg in ((m.thigh, True), (m.buttock, False)):
            e = tr.at(h)
            if e is None:
                continue
            cu, cw, ru, rw = e[0], e[1], e[2], e[3]
            if leg:  # back from the leg frame to the hip frame (see slices.leg_frame)
                cu, cw = leg_to_hip(cu, cw, h, m.sp)
                ru = rw = max(ru, rw)
            xc = x_mid + m.sign * (m.head_x + cu) * m.size
            lo, hi = min(lo, xc - ru * m.size - margin), max(hi, xc + ru * m.size + margin)
            y_lo, y_hi = min(y_lo, y_head - (cw + rw) * m.size - margin), max(y_hi, y_head - (cw - rw) * m.size + margin)
        if t is not None:
            lo, hi = min(lo, x_mid - t[2] * p.scale - margin), max(hi, x_mid + t[2] * p.scale + margin)
            y_lo = min(y_lo, y_head - (t[1] + t[3]) * p.scale - margin)
            y_hi = max(y_hi, y_head - (t[1] - t[3]) * p.scale + margin)
        x_ranges.append((lo, hi))
    boxes = []
    for (lo, hi), half in zip(x_ranges, halves, strict=True):
        c0, c1 = np.searchsorted(xs, lo), np.searchsorted(xs, hi, side="right")
        boxes.append(slice(max(int(c0), half.start), min(int(c1), half.stop)))
    if not np.isfinite(y_lo):
        return slice(0, 0), boxes
    r0, r1 = np.searchsorted(ys, y_lo), np.searchsorted(ys, y_hi, side="right")
    return slice(int(r0), int(r1)), boxes


def _bulk(rows: list, bulk: float) -> list:
    """Outline rows with radii grown for a more muscular patient."""
    return [(r[0], r[1], r[2], r[3] * bulk**0.5, r[4] * bulk**0.5) for r in rows]


def default_spacing(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    return (Z_EXTENT_MM / shape[0], FOV_MM / shape[1], FOV_MM / shape[2])


def generate_phantom(
    seed: int,
    *,
    shape: tuple[int, int, int] = (200, 256, 256),
    spacing: tuple[float, float, float] | None = None,
    sided: bool = False,
    calibration_phantom: bool = False,
    arms: bool = False,
    noise: bool = True,
    streaks: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Phantom:
    """Generate one labelled synthetic CT of both hips and thighs.

    The default spacing gives a 380 x 380 mm in-plane field of view whatever
    the matrix and a z extent of 290 mm, from mid-thigh (first slice) to just
    above the iliac crest (last slice); the spacing is (290 / nz, 380 / ny,
    380 / nx) mm. With an explicit spacing the volume is centred on the same
    anatomy. Patient left is +x (LPS), anterior is -y, the last slice is the
    most superior. Same seed and parameters give byte-identical output.

    Args:
        seed: patient identity; every random choice derives from it.
        shape: (z, y, x) voxels.
        spacing: (z, y, x) mm; None for the default above.
        sided: left and right structures get their own label values.
        calibration_phantom: put a block with dense rods between back and table.
        arms: put both arms beside the body, above the table (``mltasks.phantom.arms``):
            tissue outside the body mask, without labels; the body is unchanged.
            Use a wide field of view (e.g. 500 mm), or they are cut at its edge.
        noise: add CT noise (streaks need it too); False keeps blur only.
        streaks: add streak artefacts between the dense bones.
    Returns:
        A ``Phantom``.
    """
    nz, ny, nx = (int(v) for v in shape)
    sz, sy, sx = default_spacing((nz, ny, nx)) if spacing is None else tuple(float(v) for v in spacing)
    p = sample_params(seed)
    sites = site_list()
    models = _side_models(p, sites)
    trunk = anatomy.outline_track(anatomy.TRUNK)
    xs = (np.arange(nx) - (nx - 1) / 2.0) * sx
    ys = (np.arange(ny) - (ny - 1) / 2.0) * sy
    z0 = Z_EXTENT_MM / 2.0 - (nz - 1) / 2.0 * sz
    zs = z0 + np.arange(nz) * sz
    X, Y = np.meshgrid(xs, ys)
    contact, table = _support(p, X, Y, calibration_phantom)
    halves = (slice(0, int(np.searchsorted(xs, p.shift[0]))), slice(int(np.searchsorted(xs, p.shift[0])), nx))
    tissue = np.zeros((nz, ny, nx), np.uint8)
    site = np.zeros((nz, ny, nx), np.uint8)
    bone = np.zeros((nz, ny, nx), np.uint8)
    side_of = np.zeros((nz, ny, nx), np.uint8)
    for k, z in enumerate(zs):
        tissue[k] = table
        for j, cols in enumerate(halves):
            side_of[k, :, cols] = j
        rows, boxes = _body_box(models, trunk, p, float(z), xs, ys, halves)
        if rows.stop <= rows.start:
            continue
        # smooth fields on the whole slice, so the box never changes the result
        dx, dy = (d[rows] for d in _deformation(p, xs, ys, z))
        planes = _smooth_grid(xs, ys, z, p.plane_field)[rows] * np.sqrt(2.0 / len(p.plane_field))
        for j, cols in enumerate(boxes):
            if cols.stop <= cols.start:
                continue
            xx, yy = X[rows, cols] + dx[:, cols], Y[rows, cols] + dy[:, cols]
            out = rasterise(models[j], sites, trunk, p, xx, yy, float(z), contact[rows, cols], min(sx, sy),
                            planes[:, cols])
            shp = xx.shape
            tissue[k, rows, cols] = np.where(out.body.reshape(shp), out.tissue.reshape(shp), table[rows, cols])
            site[k, rows, cols] = out.site.reshape(shp)
            bone[k, rows, cols] = out.bone.reshape(shp)
        report(on_progress, "phantom", k + 1, nz)
    body = tissue_in_body(tissue)
    label_set = default_label_set(sided=sided)
    labels = _labels(site, bone, side_of, sites, label_set, sided)
    _keep_largest(labels, side_of, tissue, site, bone)
    if arms:
        add_arms(tissue, xs, ys, zs, p, sample_arms(p))
    origin = (float(xs[0]), float(ys[0]), float(zs[0]))
    geometry = Geometry(shape=(nz, ny, nx), spacing=(sz, sy, sx), origin=origin)
    hu_clean = intensity.tissue_model(tissue, site, sites, side_of, p, geometry)
    hu = intensity.scanner(hu_clean, tissue, p, geometry, noise=noise, streaks=streaks and noise)
    return Phantom(hu=hu, labels=labels, body=body, geometry=geometry, label_set=label_set,
                   hu_clean=hu_clean.astype(np.float32), tissue=tissue, params=p)


def tissue_in_body(tissue: np.ndarray) -> np.ndarray:
    return (tissue != T.AIR) & (tissue < T.TABLE_SHELL)


def _waves_grid(xs: np.ndarray, ys: np.ndarray, z: float, table: np.ndarray, amps: np.ndarray | None = None) -> np.ndarray:
    """(ny, nx) sum of plane waves a * sin(kx x + ky y + kz z + phase), evaluated separably."""
    out = np.zeros((ys.size, xs.size))
    for i, (kx, ky, kz, ph) in enumerate(table):
        a = 1.0 if amps is None else float(amps[i])
        px = kx * xs + (kz * z + ph)
        sy_, cy_ = np.sin(ky * ys)[:, None], np.cos(ky * ys)[:, None]
        out += (a * np.sin(px))[None, :] * cy_ + (a * np.cos(px))[None, :] * sy_
    return out


def _smooth_grid(xs: np.ndarray, ys: np.ndarray, z: float, table: np.ndarray, amps: np.ndarray | None = None,
                 step: int = 4) -> np.ndarray:
    """``_waves_grid`` on every ``step``-th voxel, linearly interpolated: the fields are smooth."""
    if min(xs.size, ys.size) <= 2 * step:
        return _waves_grid(xs, ys, z, table, amps)
    cx = np.append(xs[::step], xs[-1] + (xs[1] - xs[0]) * (step - (xs.size - 1) % step))
    cy = np.append(ys[::step], ys[-1] + (ys[1] - ys[0]) * (step - (ys.size - 1) % step))
    coarse = _waves_grid(cx, cy, z, table, amps)
    return upsample(upsample(coarse, 0, ys.size, step), 1, xs.size, step)


def _deformation(p: PatientParams, xs: np.ndarray, ys: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement (mm) of the in-plane coordinates, (ny, nx) each."""
    return tuple(_smooth_grid(xs, ys, z, comp[:, 1:], comp[:, 0]) for comp in p.deform)


def _support(p: PatientParams, X: np.ndarray, Y: np.ndarray, calibration: bool) -> tuple[np.ndarray, np.ndarray]:
    """(contact, table): the y (mm) the body may not pass, and the tissues of table and phantom."""
    dx = X - p.shift[0]
    top = p.head_y + p.shift[1] + p.scale * 116.0 + 1.2 * p.fat_mm * (1 + 1.2 * p.fat_posterior) - 6.0 + p.table_y
    table_top = top - dx * dx / (2 * TABLE_RADIUS)
    tis = np.zeros(X.shape, np.uint8)
    inside = np.abs(dx) < 215.0
    below = Y - table_top
    tis[inside & (below >= 0) & (below < 2.5)] = T.TABLE_SHELL
    tis[inside & (below >= 2.5) & (below < 36)] = T.TABLE_FOAM
    tis[inside & (below >= 36) & (below < 39)] = T.TABLE_SHELL
    contact = table_top - 0.5
    if calibration:
        h = p.phantom_height
        block = (np.abs(dx) < 150.0) & (below < 0) & (below >= -h)
        tis[block] = T.BLOCK
        for i, rx in enumerate(np.linspace(-100.0, 100.0, 5)):
            rod = (dx - rx) ** 2 + (below + h / 2) ** 2 < (0.3 * h) ** 2
            tis[rod & block] = T.ROD + i
        # the patient lies on the block: the skin touches it
        contact = np.where(np.abs(dx) < 150.0, table_top - h, contact)
    return contact, tis


def _labels(site: np.ndarray, bone: np.ndarray, side_of: np.ndarray, sites: list[SiteInfo],
            label_set: LabelSet, sided: bool) -> np.ndarray:
    """Label values from site / bone codes through lookup tables (one per side)."""
    labels = np.zeros(site.shape, np.uint8)
    for j, side in enumerate(SIDES):
        def value(name: str, side: str = side) -> int:
            return label_set.value_of(f"{name}_{side}" if sided and name != "sacrum" else name)
        site_lut = np.zeros(256, np.uint8)
        for i, s in enumerate(sites):
            if s.label:
                site_lut[i + 1] = value(s.label)
        bone_lut = np.zeros(256, np.uint8)
        for code, name in BONE_NAMES.items():
            bone_lut[code] = value(name)
        m = side_of == j
        labels[m] = np.where(bone[m] > 0, bone_lut[bone[m]], site_lut[site[m]])
    return labels


def _keep_largest(labels: np.ndarray, side_of: np.ndarray, tissue: np.ndarray, site: np.ndarray, bone: np.ndarray) -> None:
    """Keep each structure's largest 26-connected 3D component, per side.

    Stray muscle bits become intermuscular fat; stray bone keeps its density
    and loses its label, so labels stay consistent with the image.
    """
    nz = np.nonzero(labels.any(axis=0))
    if not nz[0].size:
        return
    crop = (slice(None), slice(nz[0].min(), nz[0].max() + 1), slice(nz[1].min(), nz[1].max() + 1))
    sub = labels[crop]
    key = np.where(sub > 0, sub.astype(np.uint16) * 2 + side_of[crop], 0).astype(np.uint16)
    cc = cc3d.connected_components(key, connectivity=26)
    n = int(cc.max())
    if n == 0:
        return
    flat_cc, flat_key = cc.ravel(), key.ravel()
    sizes = np.bincount(flat_cc, minlength=n + 1)
    comp_key = np.zeros(n + 1, np.int64)
    comp_key[flat_cc] = flat_key
    best = np.zeros(int(key.max()) + 1, np.int64)
    best_size = np.zeros_like(best)
    for comp in range(1, n + 1):
        kk = comp_key[comp]
        if sizes[comp] > best_size[kk]:
            best_size[kk], best[kk] = sizes[comp], comp
    stray = ((cc > 0) & (best[key] != cc))
    if not stray.any():
        return
    soft = stray & (bone[crop] == 0)
    tissue[crop][soft] = T.FAT
    site[crop][soft] = 0
    bone[crop][stray & ~soft] = 255
    labels[crop][stray] = 0
