"""Attribution maps ("explanations") of hole-quality predictions: which pixels of a hole's crop pushed its
predicted CTFMaxRes up (a worse hole) or down (a better one). Built on captum.

Methods (``attributions(..., method=...)``):

=====================  ==========================================================================================
integrated_gradients   Sundararajan et al. 2017: gradients along the straight path from a baseline image to the
                       crop, times the difference. Pixel resolution, every image backbone. The map sums to
                       f(crop) − f(baseline) in Å (completeness). The default baseline is a flat image of the
                       crop's mean brightness (zero after per-image normalisation); models often call a flat image
                       bad, so to ask "what makes this hole worse than a good one" pass :func:`good_reference`.
gradcam                Selvaraju et al. 2017: a late convolutional layer's activations weighted by their mean
                       gradient, summed over channels, upsampled (bilinear) to the input size. Coarse (the layer's
                       grid), signed here: standard Grad-CAM is ``np.maximum(map, 0)``. The layer is
                       :func:`gradcam_layer`'s choice for the input size or the caller's ``target_layer``.
=====================  ==========================================================================================

Sign convention, for both methods and both targets: **positive = raises the predicted CTFMaxRes (Å), i.e. makes
the hole look worse**. The attributed quantity is the prediction in Å (:class:`DecodedCTF`) — for
``target="bins"`` the expected CTFMaxRes over the bins — so regression and bin models read the same way.

Grad-CAM needs a layer with a spatial grid late in the network: a late stage of the ResNet and bL-ResNet families
(the last one with at least 4 × 4 cells at the input size), the last downsampling convolution of RegionViT.
CrossViT and GrafT have no convolution after their patch embeddings: :func:`gradcam_layer` raises (pass
``target_layer=`` to force one, e.g. a patch embedding's projection for patch-sized maps), and
:func:`explanation_grid` shows integrated gradients only. Temporal (movie) backbones are not supported
(ValueError).

Maps are in the model's input frame: the centre ``input_size`` × ``input_size`` window of the crop (or the crop
resized to it), as :meth:`HoleQualityPredictor.preprocess` takes it; :func:`input_view` puts any crop-sized image
(a mask, a thickness map) in the same frame.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryorl.atlas import MAX_FEATURE_CTF
from cryorl.fileio import atomic_path
from cryorl.images.imaging import CROP_SIZE, Optics
from cryorl.perception.crops import CROP_PIXEL_UM, render_hole_crops
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.resnet import StagedBackbone
from cryorl.synth import FIT_FAILURE_SENTINEL

__all__ = ["explain_holes", "attributions", "gradcam_layer", "DecodedCTF", "good_reference", "input_view", "hole_mask",
           "simulated_cause", "render_with_crystals", "positive_share", "select_holes", "plot_attribution",
           "explanation_grid", "METHODS", "CAUSES"]

METHODS = ("integrated_gradients", "gradcam")
METHOD_TITLES = {"integrated_gradients": "integrated gradients", "gradcam": "Grad-CAM"}

# causes of a simulated hole's quality (:func:`simulated_cause`), worst first
CAUSES = ("contamination", "no ice", "thick ice", "thin ice, poor fit", "good")
EMPTY_HOLE_NM = 12.6       # thinner ice: the noise-free CTFMaxRes (cryorl.synth.ctf_from_thickness) passes 6 Å
THICK_ICE_NM = 80.0        # thicker ice: the same on the thick side
GOOD_CTF = 6.0             # Å
CRYSTAL_DOSE = 30000.0     # electrons per pixel of the near-noise-free renders that locate the ice crystals


class DecodedCTF(nn.Module):
    """A predictor's model followed by its decoding: (N, 1, S, S) normalised images → (N,) predicted CTFMaxRes (Å):
    the expected value over the bins for ``target="bins"``; for regression the output in Å *before* the clip to
    [0, 20] Å of :meth:`HoleQualityPredictor.predict` (the same value inside that range) — the clip would zero the
    gradient of every hole predicted at the 20 Å ceiling, the worst holes, those most worth explaining."""

    def __init__(self, predictor: HoleQualityPredictor) -> None:
        super().__init__()
        self.model = predictor.model
        self.bins = predictor.config["target"] == "bins"
        self.register_buffer("centres", predictor.bin_centres.clone(), persistent=False)    # Å, one per bin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        if self.bins:
            return torch.softmax(output, dim=1) @ self.centres.to(output.device)
        return output[:, 0] * MAX_FEATURE_CTF


def _require_images(predictor: HoleQualityPredictor) -> None:
    if predictor.movies:
        raise ValueError(f"{predictor.name} is a temporal (movie) backbone: explanations support image backbones "
                         "only; explain an image model of the same family (e.g. resnet10_small)")


def gradcam_layer(model: nn.Module, input_size: int | None = None, min_cells: int = 4) -> nn.Module:
    """The layer Grad-CAM explains by default. For a ResNet or bL-ResNet, a stage's output (the Grad-CAM paper's
    ``layer4``): the last stage, or with ``input_size`` the last whose grid is at least ``min_cells`` a side — at
    64 pixels the last stage of a ResNet is 2 × 2, which can only say which quadrant. Otherwise the last
    convolution that is not a patch embedding (kernel = stride > 1). Raises ValueError for models with none
    (CrossViT, GrafT)."""
    if isinstance(model, StagedBackbone):
        if input_size is None:
            return model.stages[-1]
        sides = []
        hooks = [stage.register_forward_hook(lambda _m, _i, out: sides.append(min(out.shape[-2:])))
                 for stage in model.stages]
        training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros(1, 1, input_size, input_size, device=_device(model)))
        finally:
            model.train(training)
            for hook in hooks:
                hook.remove()
        fine = [i for i, side in enumerate(sides) if side >= min_cells]
        return model.stages[fine[-1] if fine else -1]
    convolutions = [m for m in model.modules()
                    if isinstance(m, nn.Conv2d) and not (m.kernel_size == m.stride and max(m.stride) > 1)]
    if convolutions:
        return convolutions[-1]
    name = getattr(model, "registry_name", type(model).__name__)
    raise ValueError(f"{name} has no convolution after its patch embedding, so Grad-CAM has no late layer to "
                     "explain: use method='integrated_gradients', or pass target_layer= (a module whose output is "
                     "(N, C, h, w), e.g. the patch embedding's projection for patch-sized maps)")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _has_gradcam_layer(model: nn.Module) -> bool:
    try:
        gradcam_layer(model)
    except ValueError:
        return False
    return True


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen weights (no gradient reaches them), restored afterwards."""
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def _baselines(predictor: HoleQualityPredictor, baseline: str | float | np.ndarray, x: torch.Tensor
               ) -> torch.Tensor:
    """Integrated gradients' start images, in the model's input space, one per input."""
    if isinstance(baseline, str):
        if baseline != "zeros":
            raise ValueError(f"baseline must be 'zeros', a number or crops, got {baseline!r}")
        return torch.zeros_like(x)
    if np.ndim(baseline) == 0:
        return torch.full_like(x, float(baseline))
    reference = predictor.preprocess(np.asarray(baseline))
    if len(reference) not in (1, len(x)):
        raise ValueError(f"baseline: {len(reference)} crops for {len(x)} crops; give one crop or one per crop")
    return reference.expand_as(x).contiguous()


def attributions(predictor: HoleQualityPredictor, crops: np.ndarray, method: str = "integrated_gradients", *,
                 target_layer: nn.Module | None = None, steps: int = 32, baseline: str | float | np.ndarray = "zeros",
                 batch_size: int = 256) -> np.ndarray:
    """(N, S, S) attribution maps (Å per pixel for integrated gradients) of the predicted CTFMaxRes of (N, H, W)
    crops, in the model's input frame. Positive = pushes the prediction up (worse).

    ``baseline`` (integrated gradients): ``"zeros"`` — a flat image of each crop's mean brightness —, a number (a
    flat image in units of the crop's standard deviation), or raw crops (one, or one per crop), e.g. a clean hole
    to explain the difference from. ``steps``: integration steps. ``target_layer`` (Grad-CAM): default
    :func:`gradcam_layer`. ``batch_size``: images per forward pass (integrated gradients runs ``steps`` per crop).
    The model is left in its mode, with no gradient on its weights."""
    _require_images(predictor)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    x_all = predictor.preprocess(crops)
    device = _device(predictor.model)
    forward = DecodedCTF(predictor)
    maps = []
    with _inference(predictor.model):
        if method == "integrated_gradients":
            start_all = _baselines(predictor, baseline, x_all)
            explainer = IntegratedGradients(forward)
            per_batch = max(1, batch_size // steps)
            for start in range(0, len(x_all), per_batch):
                chunk = slice(start, start + per_batch)
                maps.append(explainer.attribute(x_all[chunk].to(device), baselines=start_all[chunk].to(device),
                                                n_steps=steps)[:, 0].cpu())
        else:
            layer = target_layer if target_layer is not None else gradcam_layer(predictor.model,
                                                                                 predictor.config["input_size"])
            explainer = LayerGradCam(forward, layer)
            for start in range(0, len(x_all), batch_size):
                x = x_all[start:start + batch_size].to(device).requires_grad_(True)
                cam = explainer.attribute(x)
                if cam.ndim != 4:
                    raise ValueError(f"Grad-CAM needs a layer with a spatial output (N, C, h, w); "
                                     f"{type(layer).__name__} gives shape {tuple(cam.shape)}")
                maps.append(LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
                            .cpu())
    size = predictor.config["input_size"]
    return torch.cat(maps).detach().numpy() if maps else np.zeros((0, size, size), np.float32)


def good_reference(predictor: HoleQualityPredictor, crops: np.ndarray, count: int = 16) -> np.ndarray:
    """A typical very good hole: of the ``count`` crops predicted best, the one with the median prediction — the
    integrated gradients baseline that makes a map read "what makes this hole worse than a good one". One real
    crop, not an average: averaging removes the shot noise, and a model may call a noise-free hole anything."""
    crops = np.asarray(crops)
    if len(crops) == 0:
        raise ValueError("good_reference needs crops to choose from")
    best = np.argsort(predictor.predict(crops), kind="stable")[:count]
    return crops[best[len(best) // 2]]


# -- geometry and simulated ground truth ---------------------------------------------------------------------------
def input_view(predictor: HoleQualityPredictor, images: np.ndarray) -> np.ndarray:
    """(N, H, W) crop-sized images (masks, thickness maps, counts) → (N, S, S) in the model's input frame: the same
    centre window (or resize) as :meth:`HoleQualityPredictor.preprocess`, without its normalisation."""
    x = torch.as_tensor(np.asarray(images, np.float32))
    return predictor.window(x if x.ndim == 3 else x[None]).numpy()


def hole_mask(predictor: HoleQualityPredictor, crop_size: int = CROP_SIZE, optics: Optics = Optics()) -> np.ndarray:
    """(S, S) bool, the centred hole (radius ``optics.hole_radius_um`` at 20 nm/pixel) in the model's input frame;
    the rest is the carbon film (its ice, the hole's lip)."""
    centre = (crop_size - 1) / 2
    y, x = np.mgrid[0:crop_size, 0:crop_size]
    disk = np.hypot(x - centre, y - centre) <= optics.hole_radius_um / CROP_PIXEL_UM
    return input_view(predictor, disk[None].astype(np.float32))[0] >= 0.5


def simulated_cause(table: pd.DataFrame) -> np.ndarray:
    """What makes each hole of a *simulated* hole table (:func:`cryorl.synth.simulate_hole_table`) good or bad,
    from its true ice thickness and CTF fit — the causes the crop renderer draws; meaningless for real data:

    ====================  =========================================================================================
    contamination         the CTF fit failed (true_ctf ≥ 100000): the crop shows an ice crystal near the centre
    no ice                thickness < 12.6 nm (noise-free CTFMaxRes > 6 Å): a (nearly) empty hole, mostly in
                          broken squares
    thick ice             thickness > 80 nm (noise-free CTFMaxRes > 6 Å): a dark hole (thick square, filled hole)
    thin ice, poor fit    normal ice but true CTFMaxRes > 6 Å: measurement noise, nothing the image shows
    good                  normal ice, true CTFMaxRes ≤ 6 Å
    ====================  =========================================================================================
    """
    missing = {"thickness_nm", "true_ctf"} - set(table.columns)
    if missing:
        raise ValueError(f"simulated_cause needs a simulated hole table; missing columns {sorted(missing)}")
    thickness = table["thickness_nm"].to_numpy(float)
    ctf = table["true_ctf"].to_numpy(float)
    return np.select([ctf >= FIT_FAILURE_SENTINEL, thickness < EMPTY_HOLE_NM, thickness > THICK_ICE_NM,
                      ctf > GOOD_CTF], list(CAUSES[:4]), CAUSES[4]).astype(object)


def render_with_crystals(table: pd.DataFrame, seed: int, rows: np.ndarray | None = None, optics: Optics = Optics(),
                         block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Crops of a simulated table's holes (``rows``, default all) and where their ice crystals are.

    Returns (N, 150, 150) int16 crops, drawn with the physics of :func:`cryorl.perception.crops.crops_for_table`
    (the same statistics, not the same pixels), and (N, 150, 150) float32 crystal thickness maps (nm; zero for
    clean holes). The maps come from rendering each block's random draws again at a near-noise-free dose with and
    without the crystal: crystal nm = mean free path × log(clean / contaminated)."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    film = optics.ice_on_carbon_ratio * table.groupby("square")["thickness_nm"].transform("median").to_numpy()
    thickness = table["thickness_nm"].to_numpy(float)
    dirty = table["true_ctf"].to_numpy(float) >= FIT_FAILURE_SENTINEL
    crops, crystals = [], []
    for k, start in enumerate(range(0, len(rows), block)):
        part = rows[start:start + block]

        def draw(contaminated: np.ndarray, dose: float, part: np.ndarray = part, k: int = k) -> np.ndarray:
            return render_hole_crops(thickness[part], film[part], contaminated, np.random.default_rng([seed, 150, k]),
                                     optics, dose=dose, chunk=len(part))

        crops.append(draw(dirty[part], 400.0))
        maps = np.zeros((len(part), CROP_SIZE, CROP_SIZE), np.float32)
        if dirty[part].any():
            with_crystal = np.maximum(draw(dirty[part], CRYSTAL_DOSE), 1).astype(np.float64)
            without = np.maximum(draw(np.zeros(len(part), bool), CRYSTAL_DOSE), 1).astype(np.float64)
            maps[dirty[part]] = np.maximum(optics.mean_free_path_nm * np.log(without / with_crystal), 0)[dirty[part]]
        crystals.append(maps)
    if not crops:
        return np.zeros((0, CROP_SIZE, CROP_SIZE), np.int16), np.zeros((0, CROP_SIZE, CROP_SIZE), np.float32)
    return np.concatenate(crops), np.concatenate(crystals)


def positive_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map, the share of its positive attribution (what pushed the prediction worse) that lies inside its
    mask ((S, S) for all, or (N, S, S)); NaN for a map with no positive attribution."""
    positive = np.maximum(np.asarray(maps, np.float64), 0.0)
    total = positive.sum(axis=(1, 2))
    inside = (positive * np.broadcast_to(masks, positive.shape)).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.full(len(total), np.nan), where=total > 0)


def select_holes(predicted: np.ndarray, causes: np.ndarray | None = None, *, per_cause: int = 2, count: int = 8
                 ) -> np.ndarray:
    """Which holes to explain ("what made this hole bad"): without ``causes``, the ``count`` holes predicted worst;
    with them, the ``per_cause`` holes predicted worst of each cause present (:data:`CAUSES` order, then any other
    labels). Indices into ``predicted``."""
    predicted = np.asarray(predicted, float)
    worst_first = np.argsort(-predicted, kind="stable")
    if causes is None:
        return worst_first[:count]
    causes = np.asarray(causes, object)
    if causes.shape != predicted.shape:
        raise ValueError(f"{len(causes)} causes for {len(predicted)} predictions")
    labels = [c for c in CAUSES if c in set(causes)] + sorted(set(causes) - set(CAUSES))
    ranked = causes[worst_first]
    return np.concatenate([worst_first[ranked == label][:per_cause] for label in labels]).astype(np.int64)


# -- pictures ------------------------------------------------------------------------------------------------------
def plot_attribution(ax, image: np.ndarray, attribution: np.ndarray | None = None, *, overlay: bool = False,
                     limit: float | None = None, title: str | None = None):
    """Draw a hole's view (grey) and/or an attribution map on ``ax``: alone in a diverging colormap (red pushes
    CTFMaxRes up, blue down, limits ±``limit``, default the map's largest magnitude), or with ``overlay=True``
    over the image, opaque where the attribution is strong. Returns ``ax``."""
    if attribution is None or overlay:
        ax.imshow(image, cmap="gray")
    if attribution is not None:
        limit = float(limit or np.abs(attribution).max() or 1.0)
        alpha = np.clip(np.abs(attribution) / limit, 0.0, 1.0) * 0.85 if overlay else None
        ax.imshow(attribution, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    return ax


def _describe(name: str, predicted: float, truth: float | None, cause: str | None, width: int = 30) -> str:
    name = name if len(name) <= width else "…" + name[-width + 1:]          # Leginon names end with what differs
    line = f"predicted {predicted:.1f} Å"
    if truth is not None:
        line += ", true " + ("fit failed" if truth >= FIT_FAILURE_SENTINEL else f"{truth:.1f} Å")
    return f"{name}\n{line}" + (f"\n{cause}" if cause else "")


def explanation_grid(predictor: HoleQualityPredictor, crops: np.ndarray, path: str | os.PathLike, *,
                     names: Sequence[str] | None = None, truth: np.ndarray | None = None,
                     causes: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                     target_layer: nn.Module | None = None, steps: int = 32,
                     baseline: str | float | np.ndarray = "zeros", dpi: float = 100) -> Path:
    """Write a PNG (atomically) with one row per crop: the hole as the model sees it, titled with its predicted and
    true CTFMaxRes and cause, then one panel per method — Grad-CAM as an overlay, integrated gradients as a map
    (red = made the hole look worse). ``methods`` default: both where the backbone has a Grad-CAM layer, else
    integrated gradients only. Each panel is 2.2 × 2.4 inches at ``dpi``. Returns the path."""
    crops = np.asarray(crops)
    n = len(crops)
    for label, values in (("names", names), ("truth", truth), ("causes", causes)):
        if values is not None and len(values) != n:
            raise ValueError(f"{len(values)} {label} for {n} crops")
    if n == 0:
        raise ValueError("no crops to explain")
    if methods is None:
        _require_images(predictor)
        gradcam = target_layer is not None or _has_gradcam_layer(predictor.model)
        methods = ("gradcam", "integrated_gradients") if gradcam else ("integrated_gradients",)
    maps = {m: attributions(predictor, crops, m, target_layer=target_layer, steps=steps, baseline=baseline)
            for m in methods}
    predicted = predictor.predict(crops)
    views = predictor.preprocess(crops)[:, 0].numpy()
    from cryorl.figures import new_figure

    columns = 1 + len(methods)
    figure = new_figure(2.2 * columns, 2.4 * n, dpi=dpi, layout="constrained")
    axes = figure.subplots(n, columns, squeeze=False)
    for i in range(n):
        title = _describe(names[i] if names is not None else f"hole {i}", predicted[i],
                          None if truth is None else float(truth[i]), None if causes is None else causes[i])
        plot_attribution(axes[i, 0], views[i], title=title)
        for ax, method in zip(axes[i, 1:], methods):
            plot_attribution(ax, views[i], maps[method][i], overlay=method == "gradcam",
                             title=f"{METHOD_TITLES[method]}\n(red: worse, blue: better)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def explain_holes(model: str | os.PathLike, out: str | os.PathLike, *, data: str | os.PathLike | None = None,
                  split: str | None = None, grids: Sequence[int] = (9,), holes: int = 2, method: str = "both",
                  baseline: str = "good", steps: int = 32, overwrite: bool = False, threads: int = 2) -> int:
    """``cryorl perception explain``: attribution maps (:func:`explanation_grid`) of the holes the predictor at
    ``model`` predicts worst — ``holes`` per cause on the simulated ``grids``, ``holes`` in all for ``data`` — as
    the PNG ``out`` (replaced only with ``overwrite``); ``method`` 'both' draws Grad-CAM where the backbone allows
    and integrated gradients from ``baseline`` ('good': a typical good hole; 'flat'). Returns the holes drawn."""
    from cryorl.outputs import check_output_file, output_file
    from cryorl.perception.data import perception_crops

    torch.set_num_threads(threads)
    inputs = [model, data]
    check_output_file(out, overwrite=overwrite, what="picture", inputs=inputs)
    if holes < 1:
        raise ValueError(f"--holes must be at least 1, not {holes}")
    predictor = HoleQualityPredictor.load(model)
    causes = None
    if data is None:                                  # simulated grids: the cause of each hole is known
        from cryorl.perception.crops import simulated_crop_dataset

        crops, table = simulated_crop_dataset(grids)
        names, truth, causes = list(table["hole"]), table["true_ctf"].to_numpy(), simulated_cause(table)
    else:
        names, crops, truth = perception_crops(data, split, labelled_only=False)
    chosen = select_holes(predictor.predict(crops), causes, per_cause=holes, count=holes)
    reference = good_reference(predictor, crops) if baseline == "good" else "zeros"
    with output_file(out, overwrite=overwrite, what="picture", inputs=inputs) as tmp:
        explanation_grid(predictor, crops[chosen], tmp, names=[names[i] for i in chosen],
                         truth=None if truth is None else truth[chosen],
                         causes=None if causes is None else causes[chosen],
                         methods=None if method == "both" else (method,), steps=steps, baseline=reference)
    return len(chosen)
