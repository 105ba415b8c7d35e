"""Automatic calibration of the annulus (centre and radii) of panoramic annular images.

A panoramic annular image is a bright-ish textured ring with a dark (near-black) region
outside it and a dark or occluded disc in its middle. The calibration works on the per-pixel
median of one or more images of the same camera (the median removes moving content and noise):

1. grayscale, 5x5 median filter;
2. threshold at Otsu's level or 20 grey levels above the dark floor (1st percentile), whichever
   is lower, then a morphological opening and closing (kernel ~1% of the image side);
3. the largest connected component is the ring; its outer contour, without the points that
   lie on the image border (the ring may be clipped by the sensor), gives the centre by a
   robust least-squares circle fit;
4. the radii come from radial profiles around that centre: the outer radius where the share of
   pixels inside the filled outer contour falls below one half, the inner radius where, walking
   inwards from the ring, the share of ring pixels falls below one half for good (the dark hole).

Anything that does not look like such a ring raises :class:`CalibrationError` with the reason.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from panoplace.errors import CalibrationError, InputError
from panoplace.panorama.annular import AnnulusGeometry

log = logging.getLogger(__name__)

MIN_CONTRAST = 20.0  # grey levels between the mean dark and mean bright pixel (Otsu classes)
DARK_MARGIN = 20.0  # grey levels above the dark floor (1st percentile) that count as ring
MIN_RING_AREA = 0.02  # share of the image the ring must cover
BIN = 0.25  # radial profile bin width, pixels
_MEDIAN_CHUNK = 4_000_000  # elements per median chunk (bounds the float64 temporaries)


def _as_image_list(images: Union[np.ndarray, Sequence[np.ndarray]]) -> List[np.ndarray]:
    """Accept one image, a list of images, or an ``(N, H, W[, C])`` stack."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)):
            return [images]
        if images.ndim in (3, 4):
            return list(images)
        raise InputError(f"calibration expects images of shape (H, W[, C]), got an array of shape {images.shape}")
    images = list(images)
    if not images:
        raise InputError("calibration needs at least one image")
    return images


def _to_gray(img: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, RGB ``(H, W, 3)`` or RGBA ``(H, W, 4)`` uint8 → ``(H, W)`` uint8."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        got = f"{img.dtype} array" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"calibration expects uint8 images, got a {got}")
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY)
    raise InputError(f"calibration expects (H, W), (H, W, 3) or (H, W, 4) images, got shape {img.shape}")


def median_image(images: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
    """Per-pixel median of the grayscale versions of ``images`` (all of one size).

    Shape: N x ``(H, W[, C])`` uint8 → ``(H, W)`` uint8.
    """
    grays = [_to_gray(im) for im in _as_image_list(images)]
    shapes = sorted({g.shape for g in grays})
    if len(shapes) > 1:
        raise InputError(f"calibration images must all have the same size, got sizes {[s[::-1] for s in shapes]} (W, H)")
    if len(grays) == 1:
        return grays[0]
    stack = np.stack(grays)  # (N, H, W)
    n, h, w = stack.shape
    out = np.empty((h, w), dtype=np.uint8)
    rows = max(1, _MEDIAN_CHUNK // (n * w))
    for r0 in range(0, h, rows):
        out[r0:r0 + rows] = np.rint(np.median(stack[:, r0:r0 + rows], axis=0)).astype(np.uint8)
    return out


def fit_circle(points: np.ndarray, iterations: int = 3) -> Tuple[float, float, float, np.ndarray]:
    """Robust algebraic (Kasa) least-squares circle through ``points``.

    points: ``(N, 2)`` float (x, y), N >= 3. Each iteration drops points whose distance to the
    circle exceeds ``max(1, 3 * robust sigma)``. Returns ``(cx, cy, r, residuals)`` with
    residuals ``(N,)`` = distance to the centre minus r for all points.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise InputError(f"fit_circle needs (N >= 3, 2) points, got shape {pts.shape}")
    keep = np.ones(len(pts), dtype=bool)
    cx = cy = r = float("nan")
    for _ in range(iterations + 1):
        p = pts[keep]
        mean = p.mean(axis=0)
        q = p - mean
        a = np.column_stack([q[:, 0], q[:, 1], np.ones(len(q))])
        b = (q ** 2).sum(axis=1)
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        ox, oy = sol[0] / 2.0, sol[1] / 2.0
        r2 = sol[2] + ox * ox + oy * oy
        if not np.isfinite(r2) or r2 <= 0:
            raise CalibrationError("the border of the bright region is not a circle")
        cx, cy, r = float(ox + mean[0]), float(oy + mean[1]), float(np.sqrt(r2))
        resid_all = np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r
        sigma = 1.4826 * np.median(np.abs(resid_all[keep] - np.median(resid_all[keep])))
        new_keep = np.abs(resid_all) <= max(1.0, 3.0 * sigma)
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return cx, cy, r, np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r


def _radial_profile(weights: np.ndarray, cx: float, cy: float) -> Tuple[np.ndarray, np.ndarray]:
    """Share of ``weights`` (H, W) in {0, 1} per ``BIN``-wide ring around (cx, cy).

    Returns ``(share, valid)``, both ``(B,)``; ``share`` is NaN where a bin has no pixel.
    """
    h, w = weights.shape
    dy = (np.arange(h, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(w, dtype=np.float32) - np.float32(cx))[None, :]
    idx = (np.sqrt(dx * dx + dy * dy) / np.float32(BIN)).astype(np.int64).ravel()
    counts = np.bincount(idx)
    hits = np.bincount(idx, weights=weights.ravel().astype(np.float64), minlength=len(counts))
    valid = counts > 0
    share = np.full(len(counts), np.nan)
    share[valid] = hits[valid] / counts[valid]
    return share, valid


def _interp_crossing(share: np.ndarray, i: int, j: int) -> float:
    """Radius where the profile crosses 0.5 between bin centres ``i`` and ``j``."""
    ri, rj = (i + 0.5) * BIN, (j + 0.5) * BIN
    si, sj = share[i], share[j]
    if si == sj:
        return 0.5 * (ri + rj)
    t = float(np.clip((si - 0.5) / (si - sj), 0.0, 1.0))
    return ri + t * (rj - ri)


def _outer_radius(share: np.ndarray, valid: np.ndarray, r_fit: float) -> float:
    """Last 1/2 crossing of the filled-disc profile within 4 px of the fitted radius."""
    lo = max(0, int((r_fit - 4.0) / BIN))
    hi = min(len(share) - 1, int((r_fit + 4.0) / BIN))
    bins = [i for i in range(lo, hi + 1) if valid[i]]
    inside = [i for i in bins if share[i] >= 0.5]
    if not inside:
        return r_fit
    i = inside[-1]
    after = [k for k in bins if k > i]
    return _interp_crossing(share, i, after[0]) if after else r_fit


def _inner_radius(share: np.ndarray, valid: np.ndarray, r_outer: float) -> float:
    """Walking inwards from the ring, the first radius where the ring share drops below 1/2
    and stays mostly below for 2 px further in (the edge of the dark central disc)."""
    start = int((r_outer - 1.0) / BIN)
    run = int(2.0 / BIN)
    for j in range(start, -1, -1):
        if not valid[j] or share[j] >= 0.5:
            continue
        window = [k for k in range(max(0, j - run), j + 1) if valid[k]]
        if np.mean([share[k] < 0.5 for k in window]) < 0.75:
            continue
        later = [k for k in range(j + 1, start + 1) if valid[k]]
        if not later:
            break
        return _interp_crossing(share, later[0], j)
    raise CalibrationError(
        "no dark central disc inside the bright ring; is this a panoramic annular image? "
        "(give the inner radius, e.g. --r-inner 0 for a circular fisheye)")


def calibrate_annulus(images: Union[np.ndarray, Sequence[np.ndarray]], start_deg: float = 0.0,
                      clockwise: bool = False, r_inner: Optional[float] = None) -> AnnulusGeometry:
    """Find the centre and radii of the ring of panoramic annular images.

    images: one image or several of the same camera and size, each ``(H, W, 3)`` RGB,
        ``(H, W, 4)`` or ``(H, W)`` uint8; with several, their per-pixel median is used.
    start_deg, clockwise: copied into the returned geometry (they cannot be seen in the image).
    r_inner: a known inner radius in pixels; then only the centre and outer radius are searched
        (for lenses without a dark central disc, e.g. ``r_inner=0`` for a circular fisheye).

    Raises :class:`CalibrationError` when no ring is found (uniform image, no dark border
    around the bright region, region not circular, no dark central disc).
    """
    gray = median_image(images)
    h, w = gray.shape
    if min(h, w) < 16:
        raise CalibrationError(f"image of {w}x{h} pixels is too small to find an annulus in")
    gray = cv2.medianBlur(gray, 5)
    dark = float(np.percentile(gray, 1))
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    above = gray > otsu
    if above.all() or not above.any():
        raise CalibrationError("no annulus found: the image is uniform")
    contrast = float(gray[above].mean()) - float(gray[~above].mean())
    if contrast < MIN_CONTRAST:
        raise CalibrationError(
            f"no annulus found: the image has almost no contrast ({contrast:.0f} grey levels "
            "between its dark and bright parts); is it uniform?")
    # Otsu may split the ring's own texture; pixels clearly above the dark floor are ring too.
    mask: np.ndarray = (gray > min(otsu, dark + DARK_MARGIN)).astype(np.uint8)
    k = max(3, int(round(min(h, w) * 0.01)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        raise CalibrationError("no annulus found: no bright region in the image")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = int(stats[best, cv2.CC_STAT_AREA])
    if area < MIN_RING_AREA * h * w:
        raise CalibrationError(
            f"no annulus found: the largest bright region covers only {100.0 * area / (h * w):.1f}% of the image")
    ring = (labels == best).astype(np.uint8)

    contours, _ = cv2.findContours(ring, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=len)
    filled = np.zeros_like(ring)
    cv2.drawContours(filled, [contour], -1, 1, thickness=cv2.FILLED)
    pts = contour.reshape(-1, 2).astype(np.float64)
    margin = 2
    off_border = ((pts[:, 0] >= margin) & (pts[:, 0] <= w - 1 - margin)
                  & (pts[:, 1] >= margin) & (pts[:, 1] <= h - 1 - margin))
    pts = pts[off_border]
    if len(pts) < 20:
        raise CalibrationError(
            "no annulus found: the bright region has no dark border around it "
            "(is this a panoramic annular image?)")

    cx, cy, r_fit, resid = fit_circle(pts)
    deviation = float(np.median(np.abs(resid)))
    if deviation > max(1.5, 0.02 * r_fit):
        raise CalibrationError(
            f"no annulus found: the border of the bright region is not a circle "
            f"(median deviation {deviation:.1f} px from the best circle of radius {r_fit:.0f} px)")
    angles = np.degrees(np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx))
    sectors = np.unique(np.floor((angles % 360.0) / 10.0).astype(int))
    if len(sectors) < 9:
        raise CalibrationError(
            f"no annulus found: only {10 * len(sectors)} degrees of the outer circle border are visible")
    if not (0.0 <= cx < w and 0.0 <= cy < h):
        raise CalibrationError(f"no annulus found: the fitted circle centre ({cx:.0f}, {cy:.0f}) is outside the image")

    share_f, valid_f = _radial_profile(filled, cx, cy)
    r_outer = _outer_radius(share_f, valid_f, r_fit)
    if r_inner is None:
        share_r, valid_r = _radial_profile(ring, cx, cy)
        r_inner = _inner_radius(share_r, valid_r, r_outer)
    elif not 0.0 <= float(r_inner) < r_outer:
        raise CalibrationError(f"the given inner radius {r_inner:g} px is not inside the found outer radius {r_outer:.1f} px")
    if r_outer - r_inner < 3.0:
        raise CalibrationError(
            f"no annulus found: the ring between radii {r_inner:.1f} and {r_outer:.1f} px is too thin")
    geometry = AnnulusGeometry(cx=round(cx, 2), cy=round(cy, 2), r_inner=round(float(r_inner), 2),
                               r_outer=round(r_outer, 2), start_deg=start_deg, clockwise=clockwise)
    log.info("annulus: centre (%.1f, %.1f), radii %.1f..%.1f px", geometry.cx, geometry.cy,
             geometry.r_inner, geometry.r_outer)
    return geometry
