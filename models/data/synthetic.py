"""Synthetic shapes for instance segmentation, with strong geometric variation.

Every image holds a few filled shapes from six classes on a cluttered background
(colour gradients, low-frequency noise, thin strokes that are not objects). Each
instance starts as a canonical mask, is bent by a smooth random displacement field
(non-rigid warp, bend and taper), then placed by a random affine map (scale, aspect
ratio, rotation, shear). Instances are pasted in order, so later ones hide earlier
ones; an annotation covers the visible pixels only, and a candidate that would leave
any instance (itself included) with too little visible area is not placed.

Output layout, COCO "instances" format::

    OUT/train/000001.png, ...            RGB images, lossless
    OUT/val/000001.png, ...
    OUT/annotations/instances_train.json
    OUT/annotations/instances_val.json
    OUT/manifest.json                    parameters of the run

Annotations carry ``id``, ``image_id``, ``category_id`` (1-based), ``bbox``
``[x, y, w, h]`` (the tight box of the visible mask, integer pixels), ``area`` (mask
pixel count), ``iscrowd`` 0, ``segmentation`` (compressed RLE, ``counts`` a str) and
``geometry`` (how it was drawn: rotation in degrees, aspect ratio and shear applied
in the shape's own frame, mean warp displacement in shape radii, and the fractions of
the shape hidden by later instances and cut off by the image border). Image ids and
annotation ids start at 1 in each split.

Output is a pure function of the parameters: image ``i`` (0-based) of split ``s``
(0 train, 1 val) draws from
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(s, i)))``, so images can be
made in any order or in parallel, and the same seed gives byte-identical files (for
the same NumPy and OpenCV versions).

``python -m models.create_synthetic_data`` draws a set from the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_util

CLASS_NAMES = ("ellipse", "triangle", "star", "ring", "cross", "crescent")
CATEGORIES = [
    {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)
]
SPLITS = ("train", "val")
FORMAT_VERSION = 1

FILLS = ("flat", "gradient", "stripes", "blotches")
_CANVAS = 128  # side of the canonical mask, pixels
_SHAPE_RADIUS = 0.55  # canonical shapes fit in this radius (canvas half-side = 1)
_IMAGE_NAME = re.compile(r"^\d{6}\.png$")


@dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the generator; every field is recorded in the manifest.

    Areas are mask areas in pixels. Target areas are drawn log-uniformly between
    ``min_area_frac`` and ``max_area_frac`` of the image area, so at 256x256 the COCO
    small (< 32^2), medium and large (> 96^2) buckets all receive instances.
    """

    min_instances: int = 2
    max_instances: int = 8
    min_area_frac: float = 6e-4
    max_area_frac: float = 0.3
    min_area: int = 16  # no instance is left with fewer visible pixels
    min_visible_frac: float = 0.25  # ... nor with less than this share of its in-image area
    min_inside_frac: float = 0.5  # share of a shape that must fall inside the image
    max_aspect: float = 3.0  # aspect ratio drawn log-uniformly in [1/max, max]
    max_shear: float = 0.5
    warp: float = 0.12  # std of the random displacement field, in shape radii
    max_bend: float = 0.25
    max_taper: float = 0.3
    min_strokes: int = 3
    max_strokes: int = 12
    max_noise: float = 8.0  # std of the additive pixel noise, drawn in [0, max]
    max_background_noise: float = 35.0  # amplitude of the smooth background noise
    blur_probability: float = 0.3  # chance of a slight Gaussian blur of the image
    fills: tuple = FILLS  # the fills an instance's colour is drawn with
    min_star_points: int = 4  # stars have this many to 7 points
    centred: bool = False  # centres near the image centre (+-15%), else anywhere
    placement_tries: int = 4

    def __post_init__(self):
        # Lists (from JSON or YAML) become tuples, so configs compare and hash alike.
        object.__setattr__(self, "fills", tuple(self.fills))
        unknown = set(self.fills) - set(FILLS)
        if not self.fills or unknown:
            raise ValueError(f"fills must be a non-empty subset of {FILLS}, got {self.fills}")
        if not 3 <= self.min_star_points <= 7:
            raise ValueError(f"min_star_points must be in [3, 7], got {self.min_star_points}")


@dataclass(frozen=True)
class DatasetPaths:
    """Where a generated data set lives. ``reused`` is True when nothing was redrawn."""

    root: Path
    images: dict  # split -> image folder
    annotations: dict  # split -> COCO json
    manifest: Path
    reused: bool = False


# ----------------------------------------------------------------------------------
# Canonical shapes: uint8 masks (0 or 255, anti-aliased edges) on a _CANVAS square;
# canonical units put the canvas at [-1, 1]^2 and shapes within _SHAPE_RADIUS.


def _fixed(points):
    """Canonical coordinates -> 4-bit fixed-point canvas pixels for cv2 drawing."""
    points = (np.asarray(points, np.float64) * _SHAPE_RADIUS + 1.0) * (_CANVAS / 2)
    return np.round(points * 16).astype(np.int32)


def _fill_polygon(canvas, points, value=255):
    cv2.fillPoly(canvas, [_fixed(points).reshape(-1, 1, 2)], value, cv2.LINE_AA, shift=4)


def _fill_disc(canvas, cx, cy, r, value=255):
    center = tuple(int(v) for v in _fixed([cx, cy]))
    radius = int(round(r * _SHAPE_RADIUS * (_CANVAS / 2) * 16))
    cv2.circle(canvas, center, radius, value, -1, cv2.LINE_AA, shift=4)


def _polar(radii, angles):
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=-1)


def _canonical_mask(rng: np.random.Generator, category: int,
                    min_star_points: int = 4) -> np.ndarray:
    """Draws one class-``category`` shape (1-based) with random proportions."""
    canvas = np.zeros((_CANVAS, _CANVAS), np.uint8)
    name = CLASS_NAMES[category - 1]
    if name == "ellipse":
        axes = _fixed([0.95, 0.95 * rng.uniform(0.55, 1.0)]) - _fixed([0.0, 0.0])
        cv2.ellipse(canvas, tuple(int(v) for v in _fixed([0, 0])), tuple(int(v) for v in axes),
                    0.0, 0.0, 360.0, 255, -1, cv2.LINE_AA, shift=4)
    elif name == "triangle":
        angles = np.deg2rad(np.array([-90.0, 30.0, 150.0]) + rng.uniform(-25, 25, 3))
        _fill_polygon(canvas, _polar(rng.uniform(0.7, 1.0, 3), angles))
    elif name == "star":
        points = int(rng.integers(min_star_points, 8))
        angles = rng.uniform(0, 2 * np.pi) + np.arange(2 * points) * np.pi / points
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.3, 0.6))
        _fill_polygon(canvas, _polar(radii, angles))
    elif name == "ring":
        _fill_disc(canvas, 0.0, 0.0, 1.0)
        _fill_disc(canvas, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1),
                   rng.uniform(0.45, 0.75), 0)
    elif name == "cross":
        w1, w2 = rng.uniform(0.18, 0.4, 2)
        a, b, c, d = rng.uniform(0.6, 1.0, 4)
        _fill_polygon(canvas, [[-a, -w1], [b, -w1], [b, w1], [-a, w1]])
        _fill_polygon(canvas, [[-w2, -c], [w2, -c], [w2, d], [-w2, d]])
    elif name == "crescent":
        _fill_disc(canvas, 0.0, 0.0, 1.0)
        angle = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.3, 0.6)
        _fill_disc(canvas, offset * np.cos(angle), offset * np.sin(angle),
                   rng.uniform(0.75, 1.0), 0)
    else:  # pragma: no cover - CLASS_NAMES and this table go together
        raise ValueError(name)
    return canvas


def _warp_canonical(rng: np.random.Generator, canvas: np.ndarray, cfg: GeneratorConfig):
    """Non-rigid warp of a canonical mask; returns (warped mask, mean displacement).

    The displacement field (in shape radii) is a random coarse grid of vectors, blown
    up with cubic interpolation, plus a bend (``y += b x^2``) and a taper
    (``x *= 1 + t y``). Sampling is inverse: output pixel ``u`` reads ``u + d(u)``.
    """
    grid = int(rng.integers(3, 6))
    coarse = rng.normal(0.0, cfg.warp, (grid, grid, 2)).astype(np.float32)
    field = cv2.resize(coarse, (_CANVAS, _CANVAS), interpolation=cv2.INTER_CUBIC)
    axis = (np.arange(_CANVAS, dtype=np.float32) + 0.5) / (_CANVAS / 2) - 1.0
    x, y = np.meshgrid(axis / _SHAPE_RADIUS, axis / _SHAPE_RADIUS)  # shape radii
    bend = rng.uniform(-cfg.max_bend, cfg.max_bend)
    taper = rng.uniform(-cfg.max_taper, cfg.max_taper)
    dx = field[..., 0] + taper * x * y
    dy = field[..., 1] + bend * (x * x - 0.5)
    scale = _SHAPE_RADIUS * (_CANVAS / 2)  # shape radii -> canvas pixels
    map_x = ((x + dx) * scale + _CANVAS / 2 - 0.5).astype(np.float32)
    map_y = ((y + dy) * scale + _CANVAS / 2 - 0.5).astype(np.float32)
    warped = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
    inside = canvas > 127
    magnitude = float(np.hypot(dx, dy)[inside].mean()) if inside.any() else 0.0
    return warped, magnitude


# ----------------------------------------------------------------------------------
# Instances


@dataclass
class _Instance:
    category: int
    box: tuple  # (y0, y1, x0, x1) of the in-image region
    mask: np.ndarray  # bool, region-sized, in-image part of the full shape
    area: int  # in-image pixels of the full shape
    geometry: dict


def _draw_instance(rng, height, width, category, target_area, cfg) -> _Instance | None:
    """Draws one warped, posed shape; None if too little of it lands in the image."""
    warped, warp_mag = _warp_canonical(
        rng, _canonical_mask(rng, category, cfg.min_star_points), cfg)
    ys, xs = np.nonzero(warped > 127)
    if len(xs) == 0:
        return None
    canonical_area = float((warped > 127).sum())  # canvas pixels
    scale = math.sqrt(target_area / canonical_area)  # output pixels per canvas pixel
    aspect = math.exp(rng.uniform(-1, 1) * math.log(cfg.max_aspect))
    shear = rng.uniform(-cfg.max_shear, cfg.max_shear)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    linear = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(
        [scale * math.sqrt(aspect), scale / math.sqrt(aspect)])
    if cfg.centred:
        center = np.array([width, height]) * (0.5 + rng.uniform(-0.15, 0.15, 2))
    else:
        center = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    # Continuous canvas point q lands at linear @ q + offset; the canvas centre at center.
    offset = center - linear @ np.full(2, _CANVAS / 2)
    # Output box of the posed canvas content, unclipped.
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.min()],
                        [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]], np.float64)
    posed = corners @ linear.T + offset
    x0, y0 = np.floor(posed.min(0)).astype(int) - 1
    x1, y1 = np.ceil(posed.max(0)).astype(int) + 1
    # Render the whole posed shape; the affine maps canvas pixel (c + 0.5) to
    # output pixel (p + 0.5), whence the half-pixel terms.
    affine = np.hstack([linear, (offset - [x0, y0] + linear @ [0.5, 0.5] - 0.5)[:, None]])
    full = cv2.warpAffine(warped, affine, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 127
    total = int(full.sum())
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    if total == 0 or cy0 >= cy1 or cx0 >= cx1:
        return None
    mask = full[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    inside = int(mask.sum())
    if inside < cfg.min_area or inside < cfg.min_inside_frac * total:
        return None
    geometry = {
        "rotation": round(math.degrees(theta), 3),
        "aspect": round(aspect, 4),
        "shear": round(shear, 4),
        "warp": round(warp_mag, 4),
        "truncated": round(1.0 - inside / total, 4),
    }
    return _Instance(category, (cy0, cy1, cx0, cx1), mask, inside, geometry)


def _place_instances(rng, height, width, cfg):
    """Places instances back to front; returns them and the owner map (-1 = none)."""
    owner = np.full((height, width), -1, np.int32)
    visible: list[int] = []
    placed: list[_Instance] = []
    count = int(rng.integers(cfg.min_instances, cfg.max_instances + 1))
    image_area = height * width
    low = math.log(max(cfg.min_area_frac * image_area, 1.5 * cfg.min_area))
    high = math.log(max(cfg.max_area_frac * image_area, 2.0 * cfg.min_area))
    areas = np.exp(rng.uniform(low, high, count))
    # Roughly large before small (a jittered order), so occlusion goes both ways.
    order = np.argsort(-areas * np.exp(rng.normal(0.0, 0.7, count)))
    for target in areas[order]:
        category = int(rng.integers(1, len(CLASS_NAMES) + 1))
        for _ in range(cfg.placement_tries):
            inst = _draw_instance(rng, height, width, category, float(target), cfg)
            if inst is None:
                continue
            y0, y1, x0, x1 = inst.box
            region = owner[y0:y1, x0:x1]
            hidden = region[inst.mask]
            lost = np.bincount(hidden[hidden >= 0], minlength=len(placed))
            keeps = all(
                visible[i] - lost[i] >= max(cfg.min_area, cfg.min_visible_frac * placed[i].area)
                for i in range(len(placed)))
            if keeps:
                region[inst.mask] = len(placed)
                for i in range(len(placed)):
                    visible[i] -= int(lost[i])
                visible.append(inst.area)
                placed.append(inst)
                break
    return placed, owner


# ----------------------------------------------------------------------------------
# Appearance


def _random_color(rng):
    return rng.uniform(0, 255, 3)


def _smooth_noise(rng, height, width, channels, cells, amplitude):
    coarse = rng.normal(0.0, amplitude, (cells, cells, channels)).astype(np.float32)
    out = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return out.reshape(height, width, channels)


def _projection(rng, height, width):
    """Pixel coordinates projected on a random direction, in pixels from the minimum."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    return proj - proj.min()


def _ramp(rng, height, width):
    """A linear ramp in [0, 1] along a random direction."""
    proj = _projection(rng, height, width)
    return proj / max(float(proj.max()), 1.0)


def _background(rng, height, width, cfg) -> np.ndarray:
    """Gradient + smooth noise + strokes (distractors, not objects); uint8 RGB."""
    c0, c1 = _random_color(rng).astype(np.float32), _random_color(rng).astype(np.float32)
    image = c0 + (c1 - c0) * _ramp(rng, height, width)[..., None]
    amplitude = rng.uniform(min(5.0, cfg.max_background_noise), cfg.max_background_noise)
    image += _smooth_noise(rng, height, width, 3, int(rng.integers(3, 9)), amplitude)
    image = np.clip(image, 0, 255).astype(np.uint8)
    scale = max(height, width)
    for _ in range(int(rng.integers(cfg.min_strokes, cfg.max_strokes + 1))):
        color = tuple(float(v) for v in _random_color(rng))
        thickness = int(rng.integers(1, 4))
        kind = rng.integers(0, 3)
        if kind == 0:  # straight line
            p, q = rng.uniform(0, scale, (2, 2)) * 16
            cv2.line(image, tuple(int(v) for v in p), tuple(int(v) for v in q), color,
                     thickness, cv2.LINE_AA, shift=4)
        elif kind == 1:  # random walk
            steps = rng.normal(0.0, scale * 0.12, (int(rng.integers(3, 8)), 2))
            pts = np.cumsum(steps, axis=0) + rng.uniform(0, scale, 2)
            cv2.polylines(image, [np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)],
                          False, color, thickness, cv2.LINE_AA, shift=4)
        else:  # elliptic arc
            center = tuple(int(v) for v in rng.uniform(0, scale, 2) * 16)
            axes = tuple(int(v) for v in rng.uniform(0.03, 0.3, 2) * scale * 16)
            start = rng.uniform(0, 360)
            cv2.ellipse(image, center, axes, rng.uniform(0, 360), start,
                        start + rng.uniform(30, 270), color, thickness, cv2.LINE_AA, shift=4)
    return image


def _texture(rng, height, width, base, fills=FILLS) -> np.ndarray:
    """A float32 RGB fill around ``base``, of a kind drawn from ``fills``."""
    other = np.clip(base + rng.normal(0.0, 50.0, 3), 0, 255)
    kind = FILLS.index(fills[int(rng.integers(0, len(fills)))])
    if kind == 0:
        weight = np.zeros((height, width), np.float32)
    elif kind == 1:
        weight = _ramp(rng, height, width)
    elif kind == 2:
        period = rng.uniform(3.0, 12.0)
        weight = 0.5 + 0.5 * np.sin(_projection(rng, height, width) * (2 * np.pi / period)
                                    + rng.uniform(0, 2 * np.pi))
    else:
        weight = np.clip(0.5 + _smooth_noise(rng, height, width, 1, int(rng.integers(2, 6)),
                                             0.4)[..., 0], 0, 1)
    return (base + (other - base) * weight[..., None]).astype(np.float32)


def render_image(rng: np.random.Generator, height: int, width: int,
                 cfg: GeneratorConfig = GeneratorConfig()):
    """Draws one image.

    Returns ``(image, instances)``: ``image`` uint8 [height, width, 3] RGB, and a list
    of dicts with ``category_id``, ``mask`` (bool [height, width], visible pixels) and
    ``geometry``. Instances are in paint order (back to front).
    """
    image = _background(rng, height, width, cfg).astype(np.float32)
    placed, owner = _place_instances(rng, height, width, cfg)
    for inst in placed:
        y0, y1, x0, x1 = inst.box
        region = image[y0:y1, x0:x1]
        under = region[inst.mask].mean(axis=0)
        base = _random_color(rng)
        for _ in range(8):  # keep the fill apart from what it covers
            if np.linalg.norm(base - under) >= 80:
                break
            base = _random_color(rng)
        region[inst.mask] = _texture(rng, y1 - y0, x1 - x0, base, cfg.fills)[inst.mask]
    if rng.random() < cfg.blur_probability:
        sigma = rng.uniform(0.5, 1.0)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= np.float32(rng.uniform(0.0, cfg.max_noise))
    image += noise
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    instances = []
    for index, inst in enumerate(placed):
        visible = owner == index
        geometry = dict(inst.geometry)
        geometry["occluded"] = round(1.0 - int(visible.sum()) / inst.area, 4)
        instances.append({"category_id": inst.category, "mask": visible, "geometry": geometry})
    return image, instances


# ----------------------------------------------------------------------------------
# COCO records


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` (0-based) of ``split``."""
    return np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index)))


def mask_to_annotation(mask: np.ndarray) -> dict:
    """bbox [x, y, w, h] (tight), area and compressed RLE of a non-empty bool mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                 int(rows[-1] - rows[0] + 1)],
        "area": int(mask.sum()),
        "segmentation": {"size": [int(v) for v in rle["size"]],
                         "counts": rle["counts"].decode("ascii")},
    }


def _make_image(task):
    """Worker: draws, writes the PNG, returns (image record, annotations without ids)."""
    seed, split, index, height, width, cfg, folder = task
    image, instances = render_image(image_rng(seed, split, index), height, width, cfg)
    name = f"{index + 1:06d}.png"
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {name}")
    Path(folder, name).write_bytes(data.tobytes())
    record = {"id": index + 1, "file_name": name, "height": height, "width": width}
    annotations = []
    for inst in instances:
        ann = {"image_id": index + 1, "category_id": inst["category_id"], "iscrowd": 0}
        ann.update(mask_to_annotation(inst["mask"]))
        ann["geometry"] = inst["geometry"]
        annotations.append(ann)
    return record, annotations


def _init_worker():
    cv2.setNumThreads(1)


@contextlib.contextmanager
def _worker_pool(workers: int | None):
    """A pool of `workers` drawing processes (None: up to 4, bounded by the CPU
    count), or None to draw in this process when that is 1."""
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1:
        yield None
        return
    # spawn: safe even when the caller has TensorFlow (threads) loaded.
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _write_split(out, split, count, seed, height, width, cfg, pool):
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if _IMAGE_NAME.match(stale.name):
            stale.unlink()
    tasks = [(seed, split, i, height, width, cfg, str(folder)) for i in range(count)]
    results = pool.imap(_make_image, tasks, chunksize=8) if pool else map(_make_image, tasks)
    images, annotations = [], []
    for record, anns in results:
        images.append(record)
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, **ann})
    coco = {
        "info": {"description": f"synthetic shapes, {split} split", "version": str(FORMAT_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path = out / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco, separators=(",", ":")))
    return path


def _image_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(v) for v in size)
    return height, width


def generate(out_dir, num_train: int, num_val: int, image_size: int | Sequence[int] = 256,
             seed: int = 0, *, workers: int | None = None,
             config: GeneratorConfig | None = None, force: bool = False) -> DatasetPaths:
    """Writes the data set under ``out_dir`` (layout in the module docstring).

    ``image_size`` is an int (square) or ``(height, width)``. ``workers`` processes
    draw images (None: up to 4, bounded by the CPU count; 1: in this process). When
    ``out_dir/manifest.json`` records the same parameters and the files are there,
    nothing is redrawn and ``reused`` is True; otherwise the split folders' images are
    replaced. The output does not depend on ``workers``.
    """
    out = Path(out_dir)
    height, width = _image_size(image_size)
    cfg = config or GeneratorConfig()
    if not (1 <= cfg.min_instances <= cfg.max_instances):
        raise ValueError("need 1 <= min_instances <= max_instances")
    counts = {"train": int(num_train), "val": int(num_val)}
    params = {"format_version": FORMAT_VERSION, "num_train": counts["train"],
              "num_val": counts["val"], "height": height, "width": width, "seed": int(seed),
              "classes": list(CLASS_NAMES),
              # As the manifest reads back (tuples become lists).
              "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    paths = DatasetPaths(
        root=out, images={s: out / s for s in SPLITS},
        annotations={s: out / "annotations" / f"instances_{s}.json" for s in SPLITS},
        manifest=out / "manifest.json")
    if not force and _matches(paths, params, counts):
        return dataclasses.replace(paths, reused=True)
    if paths.manifest.exists():
        paths.manifest.unlink()  # invalid until this run completes
    with _worker_pool(workers) as pool:
        for split in SPLITS:
            _write_split(out, split, counts[split], int(seed), height, width, cfg, pool)
    paths.manifest.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return paths


def _classification_image(task):
    """Worker: `(image, 0-based class)` of one draw, None when no instance was placed."""
    seed, split, index, size, cfg = task
    image, instances = render_image(image_rng(seed, split, index), size, size, cfg)
    if len(instances) != 1:
        return None
    return image, instances[0]["category_id"] - 1


def classification_set(count: int, size: int, seed: int = 0, split: str = "train", *,
                       config: GeneratorConfig | None = None,
                       workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` images of one instance each, for classifying the shapes.

    Draws are made with ``config`` restricted to one instance per image, from
    ``image_rng(seed, split, i)`` for ``i = 0, 1, ...``; draws that placed no instance
    are skipped, so the result is still a pure function of the arguments.

    Returns:
      ``images`` uint8 ``[count, size, size, 3]`` and ``labels`` int64 ``[count]``,
      0-based indices into ``CLASS_NAMES``.
    """
    cfg = dataclasses.replace(config or GeneratorConfig(), min_instances=1, max_instances=1)
    images, labels = [], []
    start = 0
    with _worker_pool(workers) as pool:
        while len(images) < count:
            # A round of draws, a little more than still needed (some place nothing).
            stop = start + (count - len(images)) * 9 // 8 + 8
            tasks = [(int(seed), split, i, int(size), cfg) for i in range(start, stop)]
            draws = pool.imap(_classification_image, tasks, chunksize=16) if pool else \
                map(_classification_image, tasks)
            for draw in draws:
                if draw is not None and len(images) < count:
                    images.append(draw[0])
                    labels.append(draw[1])
            start = stop
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
            np.asarray(labels, np.int64))


def _matches(paths: DatasetPaths, params: dict, counts: dict) -> bool:
    try:
        if json.loads(paths.manifest.read_text()) != params:
            return False
    except (OSError, ValueError):
        return False
    for split in SPLITS:
        if not paths.annotations[split].is_file() or not paths.images[split].is_dir():
            return False
        found = sum(1 for p in paths.images[split].iterdir() if _IMAGE_NAME.match(p.name))
        if found != counts[split]:
            return False
    return True

