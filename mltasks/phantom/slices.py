"""Rasterising one half of one axial slice (one leg / hemipelvis) into tissues and sites.

Muscles packed against each other share their boundaries: every soft-tissue
voxel inside the deep fascia goes to the site with the smallest approximate
signed distance (a Voronoi-like partition whose cells are the sites'
ellipses), and a fat plane is drawn only where a smooth random field and a
per-pair factor allow it, so some boundaries are implied by shape alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mltasks.phantom import anatomy, bones, shapes
from mltasks.phantom.params import PatientParams, SideParams
from mltasks.phantom.tissue import T

CLAIM_MM = 7.0  # a site takes fat-free tissue up to this far outside its ellipse


@dataclass
class SiteInfo:
    name: str
    kind: str  # muscle, other, vessel, cavity
    frame: str  # leg, mid, mid_abs
    label: str  # structure name without side ("" when unlabelled)
    pair_index: int  # row of PatientParams.pair_factor


@dataclass
class SideModel:
    """Everything fixed for one side of one patient."""

    sign: int  # -1 patient right, +1 patient left
    size: float  # template mm -> mm
    head_x: float  # template mm from the midline
    sp: SideParams
    tracks: list[anatomy.Track]
    thigh: anatomy.Track
    buttock: anatomy.Track


@dataclass
class SliceOut:
    """(n,) arrays over the voxels of a half-slice (flattened row-major)."""

    tissue: np.ndarray
    site: np.ndarray  # 0: none, else 1 + index into the site list
    bone: np.ndarray  # 0 none, 1 pelvis, 2 femur, 3 sacrum
    body: np.ndarray


def _leg_frame(u0: np.ndarray, w0: np.ndarray, h: float, sp: SideParams) -> tuple[np.ndarray, np.ndarray]:
    """Rotate / abduct / flex the leg about the hip: full effect below the lesser trochanter."""
    t = float(np.clip((-20.0 - h) / 60.0, 0.0, 1.0))
    blend = t * t * (3 - 2 * t)
    below = max(-h, 0.0)
    ul = u0 - np.tan(np.deg2rad(sp.abduction)) * below
    wl = w0 - np.tan(np.deg2rad(sp.flexion)) * below
    a = np.deg2rad(sp.rotation) * blend
    c, s = np.cos(a), np.sin(a)
    return c * ul - s * wl, s * ul + c * wl


def leg_to_hip(u: float, w: float, h: float, sp: SideParams) -> tuple[float, float]:
    """Inverse of ``_leg_frame`` for one point."""
    t = float(np.clip((-20.0 - h) / 60.0, 0.0, 1.0))
    a = np.deg2rad(sp.rotation) * t * t * (3 - 2 * t)
    c, s = np.cos(a), np.sin(a)
    below = max(-h, 0.0)
    return (c * u + s * w + np.tan(np.deg2rad(sp.abduction)) * below,
            -s * u + c * w + np.tan(np.deg2rad(sp.flexion)) * below)


def _ellipse_track(tr: anatomy.Track, u: np.ndarray, w: np.ndarray, h: float) -> np.ndarray | None:
    e = tr.at(h)
    if e is None:
        return None
    return shapes.ellipse(u, w, e[0], e[1], e[2], e[3], 0.0)


def envelope(model: SideModel, trunk: anatomy.Track, fr: dict, h: float, hm: float) -> np.ndarray:
    """Signed distance (template mm) of the deep fascia: thigh, buttock and trunk blended."""
    env = np.full(fr["u"].shape, np.inf)
    for tr, uu, ww, hh in ((model.thigh, fr["u"], fr["w"], h), (model.buttock, fr["u0"], fr["w0"], h), (trunk, fr["d"], fr["wm"], hm)):
        e = _ellipse_track(tr, uu, ww, hh)
        if e is not None:
            env = shapes.smooth_min(env, e, 25.0) if np.isfinite(env).any() else e
    return env


def bone_fields(fr: dict, h: float, hm: float, head_x: float) -> dict[str, np.ndarray]:
    femur, cortex = bones.femur(fr["u"], fr["w"], h)
    pelvis, joint = bones.pelvis(fr["u0"], fr["w0"], h, head_x)
    sacrum, canal = bones.sacrum(fr["d"], fr["wm"], hm)
    lumbar, lcanal, disc = bones.lumbar(fr["d"], fr["wm"], hm)
    return {"femur": femur, "femur_cortex": cortex, "pelvis": pelvis, "joint": joint, "sacrum": sacrum,
            "lumbar": lumbar, "canal": canal | lcanal, "disc": disc}


def site_distances(model: SideModel, sites: list[SiteInfo], fr: dict, h: float, hm: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(k, n) signed distances (template mm, minus the claim margin), (k, n) partition scores
    (distance / thickness), (k,) site indices and (k,) thicknesses (mm)."""
    frames = {"leg": (fr["u"], fr["w"], h), "mid": (fr["d"], fr["wm"], hm), "mid_abs": (np.abs(fr["d"]), fr["wm"], hm)}
    active = []
    for i, (site, tr) in enumerate(zip(sites, model.tracks, strict=False)):
        e = tr.at(frames[site.frame][2])
        if e is not None:
            active.append((i, e))
    n = fr["u"].size
    dist = np.full((len(active), n), np.inf)
    score = np.full((len(active), n), np.inf)
    for row, (i, (cu, cw, a, b, th)) in enumerate(active):
        uu, ww, _ = frames[sites[i].frame]
        if sites[i].frame == "mid":
            cu *= model.sign  # midline sites are described for the left side
        reach = max(a, b) + CLAIM_MM
        near = np.flatnonzero((np.abs(uu - cu) < reach) & (np.abs(ww - cw) < reach))
        # small sites only reach a little beyond their ellipse, so they fade out smoothly
        d = shapes.ellipse(uu[near], ww[near], cu, cw, a, b, th) - min(CLAIM_MM, 0.5 * min(a, b))
        dist[row, near] = d
        # depth relative to the site's thickness: a small muscle lying inside a big one's
        # ellipse keeps its core; the cavity only fills what no muscle takes
        sc = d / (min(a, b) + 3.0)
        score[row, near] = np.maximum(sc, -0.05) if sites[i].kind == "cavity" else sc
    scales = np.array([min(e[2], e[3]) + 3.0 for _, e in active])
    return dist, score, np.array([i for i, _ in active], dtype=int), scales


def cavity_content(fr: dict, hm: float, p: PatientParams) -> np.ndarray:
    """Tissue of the pelvic / abdominal cavity: bladder, rectum, bowel loops and fat."""
    d, wm = fr["d"], fr["wm"]
    out = np.full(d.shape, int(T.FAT), dtype=np.uint8)
    field = shapes.waves(d * 1.3, wm, hm, p.bowel_field)
    bowel_w = np.clip((hm + 10.0) / 40.0, 0.0, 1.0)
    out[field > 1.1 - 1.4 * bowel_w] = T.BOWEL
    out[(field > 2.0) & (hm > 20)] = T.GAS
    wc = float(np.interp(hm, [-10, 72], [-86, -47])) + 30.0
    rectum = shapes.ellipse_q(d, wm, 0.0, wc, 16.0, 13.0, 0.0)
    if -40 < hm < 50:
        out[rectum < 1.0] = T.BOWEL
        out[(rectum < 0.45) & (np.sin(0.21 * hm + p.seed) > 0.3)] = T.GAS
    rb = p.bladder_radius
    bh = hm + 25.0 - rb
    if abs(bh) < rb:
        rr = np.sqrt(rb * rb - bh * bh)
        out[shapes.ellipse_q(d, wm, 0.0, 20.0, rr * 1.2, rr, 0.0) < 1.0] = T.URINE
    return out


def rasterise(model: SideModel, sites: list[SiteInfo], trunk: anatomy.Track, p: PatientParams,
              x: np.ndarray, y: np.ndarray, z: float, contact: np.ndarray, pixel_mm: float,
              planes: np.ndarray) -> SliceOut:
    """Tissue, site and bone of the half-slice with deformed coordinates ``x``, ``y`` (mm, LPS)."""
    s_side, s_mid = model.size, p.scale
    x_mid, y_head = p.shift[0], p.head_y + p.shift[1]
    h, hm = (z - p.head_level) / s_side, (z - p.head_level) / s_mid
    u0 = model.sign * (x - x_mid) / s_side - model.head_x
    w0 = -(y - y_head) / s_side
    u, w = _leg_frame(u0, w0, h, model.sp)
    fr = {"u0": u0, "w0": w0, "u": u, "w": w, "d": (x - x_mid) / s_mid, "wm": -(y - y_head) / s_mid}
    env = envelope(model, trunk, fr, h, hm) * s_side
    fat_max = p.fat_mm * (1.0 + 1.2 * p.fat_posterior) * 1.18
    cand = np.flatnonzero((env < fat_max) & (y < contact))
    n = x.size
    out = SliceOut(np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(n, bool))
    if cand.size == 0:
        return out
    fr = {k: v.ravel()[cand] for k, v in fr.items()}
    xc, yc = x.ravel()[cand], y.ravel()[cand]
    fat = p.fat_mm * (1.0 + 1.2 * p.fat_posterior * np.clip(-fr["wm"] / 110.0, 0.0, 1.0))
    fat = fat * (1.0 + 0.18 * np.sin(0.05 * xc + 0.03 * z) * np.cos(0.04 * yc))
    bf = bone_fields(fr, h, hm, model.head_x)
    bone_sdf = np.minimum(np.minimum(bf["femur"], bf["pelvis"]) * s_side, np.minimum(bf["sacrum"], bf["lumbar"]) * s_mid)
    env_c = np.minimum(env.ravel()[cand], bone_sdf + 4.0)
    skin = env_c - fat
    inbody = skin < 0
    cand, fr, env_c, skin = cand[inbody], {k: v[inbody] for k, v in fr.items()}, env_c[inbody], skin[inbody]
    bf = {k: (v[inbody] if isinstance(v, np.ndarray) else v) for k, v in bf.items()}
    tissue = np.where(skin > -1.8, T.SKIN, T.SUBQ_FAT).astype(np.uint8)
    site = np.zeros(cand.size, np.uint8)
    bone = np.zeros(cand.size, np.uint8)
    inner = env_c < 0
    _bones(tissue, bone, bf, inner, s_side, s_mid, pixel_mm, h)
    soft = inner & (bone == 0) & ~bf["canal"] & ~bf["joint"] & ~bf["disc"]
    tissue[inner & bf["joint"] & (bone == 0)] = T.JOINT
    tissue[inner & bf["canal"] & (bone == 0)] = T.CSF
    tissue[inner & bf["disc"] & (bone == 0)] = T.DISC
    _soft_tissue(tissue, site, soft, model, sites, p, fr, env_c, planes.ravel()[cand], h, hm)
    out.tissue[cand], out.site[cand], out.bone[cand], out.body[cand] = tissue, site, bone, True
    return out


def _bones(tissue, bone, bf, inner, s_side, s_mid, pixel_mm, h) -> None:
    thin = max(1.6, 0.9 * pixel_mm)
    for code, name, scale, cortex in ((3, "sacrum", s_mid, thin), (0, "lumbar", s_mid, thin),
                                      (1, "pelvis", s_side, thin), (2, "femur", s_side, None)):
        sdf = bf[name] * scale
        m = (sdf < 0) & inner & (bone == 0) & ~(bf["canal"] & (name != "femur"))
        if not m.any():
            continue
        t = max(bf["femur_cortex"] * scale, 0.9 * pixel_mm) if cortex is None else cortex
        inside = T.MARROW if (name == "femur" and h < -80) else T.CANCELLOUS
        tissue[m] = np.where(sdf[m] > -t, T.CORTEX, inside)
        bone[m] = code if code else 255  # 255: bone without a label (L5)


def _soft_tissue(tissue, site, soft, model, sites, p, fr, env_c, planes, h, hm) -> None:
    if not soft.any():
        return
    sub = {k: v[soft] for k, v in fr.items()}
    dist, score, idx, scales = site_distances(model, sites, sub, h, hm)
    t = np.full(sub["u"].size, int(T.FAT), np.uint8)
    s = np.zeros(sub["u"].size, np.uint8)
    if len(idx):
        first = np.argmin(score, axis=0)
        best_score = np.take_along_axis(score, first[None], axis=0)[0]
        best = np.take_along_axis(dist, first[None], axis=0)[0]
        claimed = best < 0
        kinds = np.array([sites[i].kind for i in idx])
        bi = idx[first]
        kind = kinds[first]
        t[claimed] = T.MUSCLE
        t[claimed & (kind == "vessel")] = T.VESSEL
        s[claimed] = bi[claimed] + 1
        cav = claimed & (kind == "cavity")
        if cav.any():
            t[cav] = cavity_content({k: v[cav] for k, v in sub.items()}, hm, p)
            s[cav] = 0
        if len(idx) > 1:
            np.put_along_axis(score, first[None], np.inf, axis=0)
            second_i = np.argmin(score, axis=0)
            second = np.take_along_axis(dist, second_i[None], axis=0)[0]
            # about twice the distance (mm) to the shared boundary, where the scores are equal
            with np.errstate(invalid="ignore"):
                gap = (np.take_along_axis(score, second_i[None], axis=0)[0] - best_score) * np.minimum(
                    scales[first], scales[second_i])
            pi = np.array([sites[i].pair_index for i in idx])
            factor = p.pair_factor[pi[first], pi[second_i]]
            vessel_or_cavity = np.isin(kind, ("vessel", "cavity")) | np.isin(kinds[second_i], ("vessel", "cavity"))
            factor = np.where(vessel_or_cavity, 1.5, factor)
            width = p.plane_width * factor * np.clip(planes[soft] - p.plane_threshold, 0.0, 1.0)
            with np.errstate(invalid="ignore"):
                plane = claimed & (second < 0) & (gap < width) & (t == T.MUSCLE)
            t[plane], s[plane] = T.FAT, 0
    # the abdominal wall: an unlabelled muscle layer under the anterior fascia
    wall = (hm > 25) & (env_c[soft] > -11.0) & (sub["wm"] > -30) & ((s == 0) | (t != T.MUSCLE))
    t[wall], s[wall] = T.MUSCLE, 0
    tissue[soft], site[soft] = t, s
