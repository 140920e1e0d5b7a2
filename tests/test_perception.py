"""Perception: every backbone family builds and learns, the predictor trains, saves and feeds the environment."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cryorl import CryoEMEnv
from cryorl.cli import main
from cryorl.perception import count_macs, count_parameters, create_model, list_models, model_entry
from cryorl.perception.crops import crops_for_table, load_session_crops, render_hole_crops
from cryorl.perception.predictor import HoleQualityPredictor, quality_metrics
from cryorl.synth import FIT_FAILURE_SENTINEL, GridSpec, simulate_hole_table

FAMILIES = {"resnet": "resnet_test", "blnet": "bl_resnet_test", "crossvit": "crossvit_test",
            "regionvit": "regionvit_test", "graft": "graft_test", "temporal": "tam_resnet_test"}
SMALL = GridSpec(n_holes=400, n_patches=30, n_squares=5, n_tiles=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_family_is_registered_with_a_cpu_and_a_test_variant():
    families = {model_entry(name).family for name in list_models()}
    assert set(FAMILIES) <= families
    for family in families:
        names = list_models(family=family)
        assert len(names) >= 2 and any(n.endswith("_test") for n in names), family
    assert {"resnet18", "resnet50", "bl_resnet50", "crossvit_tiny", "crossvit_9", "regionvit_tiny",
            "graft_deit_tiny", "tam_resnet18", "superimage_resnet10_small"} <= set(list_models())
    assert list_models("crossvit*") == ["crossvit_9", "crossvit_test", "crossvit_tiny"]


@pytest.mark.parametrize("name", list_models("*_test") + ["tsn_resnet10_small"])
def test_forward_and_backward_at_any_input_size(name):
    """Every registered test-sized backbone (a new family's ``*_test`` variant is picked up), with the input rank
    its registry entry declares."""
    entry = model_entry(name)
    model = create_model(name, num_outputs=3)
    shapes = [entry.input_shape]
    if not entry.takes_movies:
        shapes.append((1, 96, 120))                          # another size the design allows
    else:
        shapes.append((entry.input_shape[0] + 2,) + entry.input_shape[1:])     # more frames
    for shape in shapes:
        x = torch.randn(2, *shape)
        out = model(x)
        assert out.shape == (2, 3)
        model.zero_grad()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert count_parameters(model) > 0 and count_macs(model, entry.input_shape) > 0


def test_published_configurations():
    tiny = create_model("crossvit_tiny")
    assert [embed.proj.out_channels for embed in tiny.embeds] == [96, 192]
    assert [embed.patch for embed in tiny.embeds] == [12, 16]
    assert len(tiny.stages) == 3 and [len(b) for b in tiny.stages[0][0]] == [1, 4]
    assert tiny.stages[0][0][0][0].attn.num_heads == 3 and tiny.stages[0][0][0][0].mlp.net[0].out_features == 384
    nine = create_model("crossvit_9")
    assert [len(b) for b in nine.stages[0][0]] == [1, 3] and nine.stages[0][0][1][0].mlp.net[0].out_features == 768
    region = create_model("regionvit_tiny")
    assert [len(s) for s in region.stages] == [2, 2, 8, 2]
    assert [s[0].attention.attn.num_heads for s in region.stages] == [2, 4, 8, 16]
    assert [s[0].attention.norm1.normalized_shape[0] for s in region.stages] == [64, 128, 256, 512]
    resnet50 = create_model("resnet50")
    assert 23e6 < count_parameters(resnet50) < 24e6                      # torchvision's 25.6M less the 1000-way head
    graft = create_model("graft_deit_tiny")
    assert len(graft.blocks) == 12 and graft.blocks[0].attn.num_heads == 3 and graft.num_features == 192


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        create_model("resnet19")
    with pytest.raises(ValueError, match="has no setting"):
        create_model("resnet_test", depth=3)
    assert create_model("resnet_test", drop=0.5).head[0].p == 0.5


def test_rendered_crops_follow_the_ice():
    from scipy.stats import spearmanr

    table = simulate_hole_table(0, SMALL)
    crops = crops_for_table(table, 0)
    assert crops.shape == (400, 150, 150) and crops.dtype == np.int16
    centre = crops[:, 65:85, 65:85].mean(axis=(1, 2))
    # failed CTF fits are drawn with an ice crystal over the hole: darker than their (thin) ice alone would be
    crystal = table["true_ctf"].to_numpy() >= FIT_FAILURE_SENTINEL
    thickness = table["thickness_nm"].to_numpy()
    assert spearmanr(centre[~crystal], thickness[~crystal]).statistic < -0.95
    thin = thickness < 15                                  # this grid has a broken square: 16 crystals, 12 on thin ice
    assert (crystal & thin).sum() >= 5 and centre[crystal & thin].mean() < centre[~crystal & thin].mean() - 50
    again = crops_for_table(table, 0)
    assert np.array_equal(crops, again)                                    # deterministic by seed
    # three holes but ice over the film for two: refused, not rendered with some hole's ice missing or recycled
    with pytest.raises(ValueError, match=r"film_ice_nm has shape \(2,\); expected \(3,\), one value per hole"):
        render_hole_crops(np.ones(3), np.ones(2), np.zeros(3, bool), np.random.default_rng(0))


@pytest.fixture(scope="module")
def trained():
    """A small predictor trained for real (a few hundred steps) on simulated crops."""
    torch.set_num_threads(1)
    train = simulate_hole_table(1, SMALL), simulate_hole_table(2, SMALL), simulate_hole_table(4, SMALL)
    crops = np.concatenate([crops_for_table(t, s) for t, s in zip(train, (1, 2, 4))])
    ctf = np.concatenate([t["true_ctf"].to_numpy() for t in train])
    held = simulate_hole_table(3, SMALL)
    predictor = HoleQualityPredictor("resnet_test", input_size=48)
    history = predictor.fit(crops, ctf, validation=(crops_for_table(held, 3), held["true_ctf"].to_numpy()),
                            epochs=6, batch_size=32, lr=3e-3, progress=False)
    return predictor, history, held


def test_predictor_learns_hole_quality(trained):
    predictor, history, held = trained
    assert len(history) == 6 and history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    metrics = predictor.evaluate(crops_for_table(held, 3), held["true_ctf"].to_numpy())
    truth = np.clip(held["true_ctf"].to_numpy(), 0, 20)
    constant = np.abs(truth - np.median(truth)).mean()                      # the best image-blind guess
    assert metrics["mae"] < 0.85 * constant and metrics["pearson_r"] > 0.5, (metrics, constant)


def test_predictor_save_load_and_bad_files(trained, tmp_path):
    predictor, _, held = trained
    crops = crops_for_table(held, 3)[:50]
    predictor.save(tmp_path / "p", {"note": "test"})
    loaded = HoleQualityPredictor.load(tmp_path / "p")
    np.testing.assert_allclose(loaded.predict(crops), predictor.predict(crops), rtol=1e-5)
    assert loaded.metadata == {"note": "test"}
    (tmp_path / "p" / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="model.pt: cannot load the weights"):
        HoleQualityPredictor.load(tmp_path / "p")
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        HoleQualityPredictor.load(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"crops must be \(N, H, W\)"):
        predictor.predict(np.zeros((2, 1, 3, 150, 150)))


def test_bins_target_trains_and_predicts_in_angstrom():
    table = simulate_hole_table(5, SMALL)
    crops, ctf = crops_for_table(table, 5), table["true_ctf"].to_numpy()
    order = np.random.default_rng(0).permutation(len(ctf))
    train, held = order[:300], order[300:]
    torch.manual_seed(0)
    predictor = HoleQualityPredictor("resnet_test", target="bins", input_size=48)
    assert predictor.model(predictor.preprocess(crops[:2])).shape == (2, len(predictor.config["bins"]) + 1)
    untrained = quality_metrics(predictor.predict(crops[held]), ctf[held])
    predictor.fit(crops[train], ctf[train], epochs=6, batch_size=32, lr=3e-3, progress=False)     # ~60 steps
    predicted = predictor.predict(crops[held])
    assert predicted.shape == (100,) and (predicted > 2).all() and (predicted < 20).all()
    # the expected CTFMaxRes over the bins, in Å, follows the truth on held-out holes: far better than the best
    # image-blind guess (untrained, the prediction is nearly constant and the error 3.5 Å)
    metrics = quality_metrics(predicted, ctf[held])
    truth = predictor.targets(ctf)
    constant = np.abs(truth[held] - np.median(truth[train])).mean()                  # 3.1 Å
    assert metrics["mae"] < 0.85 * constant and metrics["pearson_r"] > 0.6, (metrics, constant, untrained)


def test_environment_plans_from_perception(trained, tmp_path):
    predictor, _, _ = trained
    env = CryoEMEnv(grid=SMALL, grid_seed=7, perception=predictor)
    # the same grid as without perception; predictions are the predictor's on that grid's crops
    plain = CryoEMEnv(grid=SMALL, grid_seed=7)
    assert list(env.atlas.names) == list(plain.atlas.names)
    assert np.allclose(env.atlas.true_ctf, plain.atlas.true_ctf, equal_nan=True)
    assert quality_metrics(env.atlas.predicted_ctf, env.atlas.true_ctf)["pearson_r"] > 0.5
    predictor.save(tmp_path / "saved")
    from_path = CryoEMEnv(grid=SMALL, grid_seed=7, perception=tmp_path / "saved")
    np.testing.assert_allclose(from_path.atlas.predicted_ctf, env.atlas.predicted_ctf, rtol=1e-5)
    obs, info = env.reset(seed=0)
    obs, reward, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    with pytest.raises(ValueError, match="needs crops="):
        CryoEMEnv(plain.atlas, perception=predictor)


def test_cli_perception_on_a_session(tmp_path, capsys):
    from cryorl.images.synth_session import simulate_session

    session = simulate_session(tmp_path / "s", seed=3, spec=GridSpec(n_holes=60, n_patches=5, n_squares=2,
                                                                       n_tiles=1), crops=True, progress=False)
    names, crops = load_session_crops(session)
    assert len(names) == 60 and crops.shape == (60, 150, 150)
    model = tmp_path / "model"
    assert main(["perception", "train", "--backbone", "resnet_test", "--input-size", "48", "--epochs", "1",
                 "--data", str(session), "--out", str(model), "--quiet", "--threads", "1"]) == 0
    assert main(["perception", "evaluate", "--model", str(model), "--data", str(session), "--threads", "1"]) == 0
    assert "mae" in capsys.readouterr().out
    out = tmp_path / "predictions.txt"
    assert main(["perception", "predict", "--model", str(model), "--data", str(session), "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    from cryorl.loaders import read_predictions

    assert len(read_predictions(out)) == 60
    assert main(["perception", "models", "--pattern", "resnet_test"]) == 0


def test_temporal_predictor_on_movie_stacks():
    from cryorl.perception.crops import movie_frames

    table = simulate_hole_table(6, SMALL)
    crops = crops_for_table(table, 6)[:64]
    movies = movie_frames(crops, 4, np.random.default_rng(0))
    assert movies.shape == (64, 4, 150, 150) and np.array_equal(movies.sum(axis=1), crops)   # every electron once
    predictor = HoleQualityPredictor("tam_resnet_test", input_size=48)
    predictor.fit(movies, table["true_ctf"].to_numpy()[:64], epochs=1, batch_size=16, progress=False)
    assert predictor.predict(movies).shape == (64,)
    with pytest.raises(ValueError, match=r"\(N, T, H, W\) movies"):
        predictor.predict(crops[:, None, None])


def test_the_model_listing_counts_on_the_meta_device_as_on_real_weights():
    """`cryorl perception models` builds models on the meta device (no weights, no arithmetic): its counts must be
    those of the real model."""
    from cryorl.perception import model_table

    row = model_table(["resnet_test"]).iloc[0]
    model = create_model("resnet_test")
    assert row["params (M)"] == count_parameters(model) / 1e6
    assert row["GMACs"] == count_macs(model, model_entry("resnet_test").input_shape) / 1e9
