"""Attribution maps of hole-quality predictions (:mod:`cryorl.perception.explain`): the sign convention on models
whose right answer is known by hand, completeness on every image backbone, localisation of the ice crystal by a
hand-built dark-spot detector on simulated crops, faithfulness on a briefly trained ResNet, and the PNG grid."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cryorl.perception import list_models, model_entry
from cryorl.perception.crops import crops_for_table
from cryorl.perception.explain import (
    CAUSES,
    DecodedCTF,
    attributions,
    explanation_grid,
    good_reference,
    gradcam_layer,
    hole_mask,
    input_view,
    positive_share,
    render_with_crystals,
    select_holes,
    simulated_cause,
)
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.synth import FIT_FAILURE_SENTINEL, GridSpec, ctf_from_thickness, simulate_hole_table

IMAGE_TEST_MODELS = [n for n in list_models("*_test") if model_entry(n).family != "temporal"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def crystal_table(n: int, seed: int) -> pd.DataFrame:
    """n holes of normal ice (≈ 50 nm) in one square; every other hole (0, 2, 4, …) has an ice crystal (its CTF
    fit failed)."""
    rng = np.random.default_rng(seed)
    thickness = rng.normal(50.0, 12.0, n).clip(20.0)
    dirty = np.arange(n) % 2 == 0
    return pd.DataFrame({"square": "s", "thickness_nm": thickness,
                         "true_ctf": np.where(dirty, FIT_FAILURE_SENTINEL, ctf_from_thickness(thickness))})


class LeftBrightness(nn.Module):
    """Regression output 0.5 + w · (mean of the left half of the image): brighter left half = worse hole for w > 0.
    Linear, so integrated gradients are exactly x · w / (pixels in the left half) there, 0 on the right."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = w
        self.probe = nn.Conv2d(1, 1, 1, bias=False)        # identity: a layer for Grad-CAM
        nn.init.ones_(self.probe.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return 0.5 + self.w * self.probe(x)[..., :half].mean(dim=(1, 2, 3))[:, None]


class WorstBinFromBrightness(nn.Module):
    """Bin logits: all zero but the worst bin's, k · (mean of the left half): brighter left = worse hole."""

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins
        self.k = nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        logits = torch.zeros(len(x), self.bins + 1)
        logits[:, -1] = self.k * x[..., :half].mean(dim=(1, 2, 3))
        return logits


class Dark(nn.Module):
    def forward(self, smoothed: torch.Tensor) -> torch.Tensor:
        return torch.relu(-smoothed - 1.5)


class DarkSpots(nn.Module):
    """A hand-built ice-crystal detector: Gaussian smoothing (σ 2 px), then the mean depth of what is darker than
    1.5 standard deviations below the crop's mean. Clean holes score ≈ 0, crystals (150-300 nm of extra ice) > 0:
    its attributions must lie on the crystal."""

    def __init__(self) -> None:
        super().__init__()
        self.smooth = nn.Conv2d(1, 1, 9, padding=4, bias=False)
        g = torch.exp(-torch.arange(-4.0, 5.0) ** 2 / 8.0)
        kernel = g[:, None] * g[None]
        with torch.no_grad():
            self.smooth.weight[:] = kernel / kernel.sum()
        self.dark = Dark()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dark(self.smooth(x)).mean(dim=(1, 2, 3))[:, None]


def with_model(model: nn.Module, target: str = "regression", input_size: int = 48) -> HoleQualityPredictor:
    predictor = HoleQualityPredictor("resnet_test", target=target, input_size=input_size)
    predictor.model = model
    return predictor


@pytest.fixture(scope="module")
def grid_crops():
    table = simulate_hole_table(1, GridSpec.with_holes(40))
    return crops_for_table(table, 1)[:6]


@pytest.fixture(scope="module")
def trained():
    """resnet_test at 48 px, 3 epochs on 240 crops, half of them with an ice crystal (CTF fit failed: 20 Å)."""
    torch.set_num_threads(1)
    table = crystal_table(240, 0)
    crops, _ = render_with_crystals(table, 0)
    predictor = HoleQualityPredictor("resnet_test", input_size=48)
    predictor.fit(crops, table["true_ctf"].to_numpy(), epochs=3, batch_size=32, progress=False, seed=0)
    return predictor


# -- sign convention ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w", [0.02, -0.02])
def test_integrated_gradients_of_a_linear_model_are_exact_and_signed(grid_crops, w):
    predictor = with_model(LeftBrightness(w))
    x = predictor.preprocess(grid_crops)[:, 0].numpy()
    maps = attributions(predictor, grid_crops, steps=8)
    half = x.shape[-1] // 2
    expected = np.zeros_like(x)
    expected[..., :half] = x[..., :half] * w * 20.0 / (x.shape[1] * half)    # Å per pixel
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    # brighter-than-average pixels of the left half push the prediction up (worse) when w > 0, down when w < 0
    bright = x[..., :half] > 0.5
    assert (np.sign(maps[..., :half][bright]) == np.sign(w)).all()


def test_gradcam_sign_follows_the_model(grid_crops):
    worse, better = (with_model(LeftBrightness(w)) for w in (0.02, -0.02))
    x = worse.preprocess(grid_crops)[:, 0].numpy()
    up = attributions(worse, grid_crops, "gradcam", target_layer=worse.model.probe)
    down = attributions(better, grid_crops, "gradcam", target_layer=better.model.probe)
    # Grad-CAM on the identity layer: (mean gradient = w·20/(2·pixels)) × the image, everywhere
    np.testing.assert_allclose(up, x * 0.02 * 20.0 / (2 * x.shape[1] * (x.shape[2] // 2)), atol=1e-6)
    np.testing.assert_allclose(down, -up, atol=1e-6)


def test_bins_target_attributes_the_expected_ctf_in_angstrom(grid_crops):
    predictor = with_model(WorstBinFromBrightness(len(HoleQualityPredictor().config["bins"])), target="bins")
    x = predictor.preprocess(grid_crops)
    maps = attributions(predictor, grid_crops, steps=64)
    with torch.no_grad():
        delta = (DecodedCTF(predictor)(x) - DecodedCTF(predictor)(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(predictor.predict(grid_crops), DecodedCTF(predictor)(x).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), delta, rtol=1e-3, atol=1e-4)
    left, pixels = maps[..., : x.shape[-1] // 2], x[:, 0, :, : x.shape[-1] // 2].numpy()
    strong = np.abs(pixels) > 1.0
    assert (np.sign(left[strong]) == np.sign(pixels[strong])).mean() > 0.99
    assert np.abs(maps[..., x.shape[-1] // 2:]).max() == 0.0


# -- every backbone ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["regression", "bins"])
@pytest.mark.parametrize("name", IMAGE_TEST_MODELS)
def test_integrated_gradients_are_complete_on_every_image_backbone(grid_crops, name, target):
    torch.manual_seed(0)
    predictor = HoleQualityPredictor(name, target=target, input_size=48)
    maps = attributions(predictor, grid_crops, steps=32)
    assert maps.shape == (len(grid_crops), 48, 48) and np.isfinite(maps).all()
    assert predictor.model.training                        # its mode is restored
    assert all(p.grad is None and p.requires_grad for p in predictor.model.parameters())
    x = predictor.preprocess(grid_crops)
    f = DecodedCTF(predictor).eval()
    with torch.no_grad():
        delta = (f(x) - f(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), delta, rtol=0.01, atol=0.01)


@pytest.mark.parametrize("name", IMAGE_TEST_MODELS)
def test_gradcam_on_convolutional_backbones_and_a_clear_error_on_transformers(grid_crops, name):
    predictor = HoleQualityPredictor(name, input_size=48)
    if model_entry(name).family in ("crossvit", "graft"):
        with pytest.raises(ValueError, match="no convolution after its patch embedding.*integrated_gradients"):
            attributions(predictor, grid_crops, "gradcam")
        return
    maps = attributions(predictor, grid_crops, "gradcam")
    assert maps.shape == (len(grid_crops), 48, 48) and np.isfinite(maps).all() and np.abs(maps).max() > 0
    assert all(p.grad is None for p in predictor.model.parameters())


def test_default_gradcam_layer_is_the_last_resnet_stage_with_a_useful_grid():
    model = HoleQualityPredictor("resnet_test").model               # stride 32 at the last stage, 16 before
    assert gradcam_layer(model) is model.stages[-1]
    assert gradcam_layer(model, 150) is model.stages[-1]           # 5 × 5 cells
    assert gradcam_layer(model, 64) is model.stages[-2]            # 2 × 2 at the last stage; 4 × 4 before
    assert model.training


@pytest.mark.parametrize("name", [n for n in list_models("*_test") if model_entry(n).family == "temporal"])
def test_temporal_backbones_are_refused(tmp_path, name):
    predictor = HoleQualityPredictor(name, input_size=48)
    movies = np.ones((2, 4, 64, 64), np.int16)
    with pytest.raises(ValueError, match="temporal .*image backbones only"):
        attributions(predictor, movies)
    with pytest.raises(ValueError, match="temporal"):
        explanation_grid(predictor, movies, tmp_path / "grid.png")


def test_argument_errors(grid_crops):
    predictor = HoleQualityPredictor("resnet_test", input_size=48)
    with pytest.raises(ValueError, match="method must be one of"):
        attributions(predictor, grid_crops, "saliency")
    with pytest.raises(ValueError, match="baseline"):
        attributions(predictor, grid_crops, baseline="blur")
    with pytest.raises(ValueError, match="2 crops for 6 crops"):
        attributions(predictor, grid_crops, baseline=grid_crops[:2])


# -- where the crystal is ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_crystal_detector_is_explained_by_the_crystal(seed):
    table = crystal_table(12, seed)
    crops, crystal_nm = render_with_crystals(table, seed)
    dirty = table["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL
    assert (crystal_nm[~dirty] == 0).all() and (crystal_nm[dirty].max(axis=(1, 2)) > 140).all()
    predictor = with_model(DarkSpots(), input_size=96)
    predicted = predictor.predict(crops)
    assert predicted[dirty].min() > 10 * predicted[~dirty].max()
    view = input_view(predictor, crystal_nm[dirty])
    masks = view >= 0.5 * view.max(axis=(1, 2), keepdims=True)               # the crystal's core, per hole
    for method, layer in (("integrated_gradients", None), ("gradcam", predictor.model.dark)):
        maps = attributions(predictor, crops[dirty], method, target_layer=layer)
        share = np.stack([positive_share(maps, mask) for mask in masks], axis=1)   # [map, crystal]
        own, others = np.diag(share), (share.sum(axis=1) - np.diag(share)) / (len(share) - 1)
        assert own.min() > 0.8, method                        # its own crystal's core holds the positive mass,
        assert (own / masks.mean(axis=(1, 2))).mean() > 2.5, method       # far more than the core's area share,
        assert own.mean() > others.mean() + 0.15, method      # and more than other holes' crystal positions


def test_attributions_of_a_trained_model_rank_the_pixels_that_matter(trained):
    """Faithfulness ("deletion"): setting the 10 % most positively attributed pixels of a contaminated hole to the
    baseline lowers its predicted CTFMaxRes by Å, far more than 10 % random pixels do."""
    table = crystal_table(24, 100)
    crops, _ = render_with_crystals(table, 100)
    crops = crops[table["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL]
    maps = attributions(trained, crops)
    x = trained.preprocess(crops).reshape(len(crops), -1)
    f = DecodedCTF(trained).eval()
    k = x.shape[1] // 10
    generator = torch.Generator().manual_seed(0)
    random = torch.stack([torch.randperm(x.shape[1], generator=generator)[:k] for _ in range(len(x))])
    top = torch.as_tensor(maps).reshape(len(x), -1).topk(k, dim=1).indices
    with torch.no_grad():
        before = f(x.reshape(-1, 1, 48, 48))
        drop = {name: (before - f(x.clone().scatter_(1, index, 0.0).reshape(-1, 1, 48, 48))).numpy()
                for name, index in (("top", top), ("random", random))}
    assert drop["top"].mean() > 1.0 and drop["top"].mean() > drop["random"].mean() + 1.0
    assert (drop["top"] > drop["random"]).mean() >= 0.75


def test_a_good_reference_baseline_reads_as_worse_than_a_good_hole(trained):
    table = crystal_table(16, 101)
    crops, _ = render_with_crystals(table, 101)
    dirty = table["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL
    reference = good_reference(trained, crops[~dirty], count=5)
    assert trained.predict(reference[None])[0] <= np.median(trained.predict(crops[~dirty]))
    maps = attributions(trained, crops[dirty], baseline=reference, steps=64)
    expected = trained.predict(crops[dirty]) - trained.predict(reference[None])[0]
    inside = (trained.predict(crops[dirty]) < 19.5) & (trained.predict(crops[dirty]) > 0.5)   # not clipped
    np.testing.assert_allclose(maps.sum(axis=(1, 2))[inside], expected[inside], rtol=0.05, atol=0.2)
    assert maps.sum(axis=(1, 2)).mean() > 3.0                  # contaminated holes read as several Å worse


# -- geometry, causes, selection ---------------------------------------------------------------------------------
def test_input_view_is_the_models_window(grid_crops):
    predictor = HoleQualityPredictor("resnet_test", input_size=64)
    view = input_view(predictor, grid_crops)
    np.testing.assert_array_equal(view, grid_crops[:, 43:107, 43:107])
    full = grid_crops.astype(np.float32)
    normalised = (full - full.mean(axis=(1, 2), keepdims=True)) / (full.std(axis=(1, 2), ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(predictor.preprocess(grid_crops)[:, 0].numpy(), normalised[:, 43:107, 43:107],
                               atol=1e-4)
    assert input_view(HoleQualityPredictor("resnet_test", input_size=160), grid_crops).shape == (6, 160, 160)
    mask = hole_mask(predictor)
    assert mask[32, 32] and not mask[0, 0] and abs(mask.sum() - np.pi * 25 ** 2) < 60


def test_simulated_causes_by_hand():
    table = pd.DataFrame({"thickness_nm": [50.0, 10.0, 120.0, 50.0, 50.0, 5.0],
                          "true_ctf": [FIT_FAILURE_SENTINEL, 12.0, 11.0, 7.5, 4.0, 5.0]})
    assert list(simulated_cause(table)) == ["contamination", "no ice", "thick ice", "thin ice, poor fit", "good",
                                            "no ice"]
    with pytest.raises(ValueError, match="missing columns"):
        simulated_cause(table[["true_ctf"]])


def test_simulated_causes_on_a_grid_follow_the_renderer():
    table = simulate_hole_table(4, GridSpec.with_holes(600))
    cause = simulated_cause(table)
    assert set(cause) <= set(CAUSES)
    np.testing.assert_array_equal(cause == "contamination", table["true_ctf"] >= FIT_FAILURE_SENTINEL)
    assert (table["true_ctf"][cause == "good"] <= 6.0).all()
    assert (table["thickness_nm"][cause == "thick ice"] > 80).all()


def test_select_holes():
    predicted = np.array([3.0, 15.0, 9.0, 20.0, 4.0, 12.0])
    causes = np.array(["good", "thick ice", "good", "contamination", "good", "thick ice"], object)
    assert list(select_holes(predicted, count=3)) == [3, 1, 5]
    assert list(select_holes(predicted, causes, per_cause=2)) == [3, 1, 5, 2, 4]
    with pytest.raises(ValueError, match="causes for"):
        select_holes(predicted, causes[:2])


# -- the picture -------------------------------------------------------------------------------------------------
def test_explanation_grid_layout(tmp_path, grid_crops):
    from matplotlib.image import imread

    predictor = with_model(LeftBrightness(0.02))
    path = explanation_grid(predictor, grid_crops[:3], tmp_path / "out" / "grid.png", names=["a", "b", "c"],
                            truth=np.array([4.0, 20.0, FIT_FAILURE_SENTINEL]), causes=["good", "thick ice",
                                                                                       "contamination"], dpi=50)
    image = imread(path)
    assert image.shape == (round(3 * 2.4 * 50), round(3 * 2.2 * 50), 4)      # 3 holes × (crop, Grad-CAM, IG)
    ig_column = image[:, 2 * image.shape[1] // 3:, :3]
    red = (ig_column[..., 0] > 0.6) & (ig_column[..., 2] < 0.4)
    blue = (ig_column[..., 2] > 0.6) & (ig_column[..., 0] < 0.4)
    assert red.sum() > 200 and blue.sum() > 200                                # a diverging map, both signs,
    assert not (red | blue)[:, ig_column.shape[1] * 3 // 5:].any()              # none where the model looks away
    vit = HoleQualityPredictor("graft_test", input_size=48)
    image = imread(explanation_grid(vit, grid_crops[:2], tmp_path / "vit.png", dpi=50))
    assert image.shape == (round(2 * 2.4 * 50), round(2 * 2.2 * 50), 4)      # no Grad-CAM layer: IG only
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["grid.png", "out", "vit.png"]
    with pytest.raises(ValueError, match="2 names for 3 crops"):
        explanation_grid(predictor, grid_crops[:3], tmp_path / "x.png", names=["a", "b"])


def test_explanation_grid_is_written_atomically(tmp_path, grid_crops, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "grid.png"
    path.write_bytes(b"previous grid")

    def interrupted(self, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(OSError, match="disk full"):
        explanation_grid(HoleQualityPredictor("resnet_test", input_size=48), grid_crops[:2], path)
    assert path.read_bytes() == b"previous grid"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]                # no partial file left


def test_cli_explains_the_worst_holes_of_a_session(tmp_path, trained, capsys):
    from matplotlib.image import imread

    from cryorl.cli import main
    from cryorl.images.synth_session import simulate_session

    session = simulate_session(tmp_path / "s", seed=4, spec=GridSpec(n_holes=40, n_patches=4, n_squares=2, n_tiles=1),
                               crops=True, progress=False)
    model = trained.save(tmp_path / "model")
    out = tmp_path / "why.png"
    args = ["perception", "explain", "--model", str(model), "--data", str(session), "--holes", "3", "--steps", "8",
            "--out", str(out), "--threads", "1"]
    assert main(args) == 0
    assert "explanations of 3 holes" in capsys.readouterr().out
    assert imread(out).shape[:2] == (round(3 * 2.4 * 100), round(3 * 2.2 * 100))   # 3 holes × (crop, Grad-CAM, IG)
    before = out.read_bytes()
    assert main(args) == 2                                             # an existing file is not replaced
    assert out.read_bytes() == before and "already exists" in capsys.readouterr().err
    assert main(args[:-4] + ["--holes", "0", "--out", str(tmp_path / "none.png")]) == 2
