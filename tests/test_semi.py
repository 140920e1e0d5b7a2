"""Augmentation policies, FixMatch and the policy search (tiny models, simulated crops and a session folder)."""
import json

import numpy as np
import pytest
import torch

from cryorl.cli import main
from cryorl.perception.augment import DEFAULT_POLICY, OPERATIONS, AugmentPolicy, Rows, apply_standard, draw_standard
from cryorl.perception.crops import crops_for_table
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.semi import FixMatch, search_policy
from cryorl.synth import GridSpec, simulate_hole_table

SMALL = GridSpec.with_holes(300)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    tables = [simulate_hole_table(s, SMALL) for s in (1, 2, 3)]
    crops = [crops_for_table(t, s) for t, s in zip(tables, (1, 2, 3))]
    return crops, [t["true_ctf"].to_numpy() for t in tables]


def normalised(crops, size=48):
    return HoleQualityPredictor("resnet_test", input_size=size).preprocess(crops)


def test_policy_rows_of_a_global_batch_equal_the_global_result(data):
    """What makes many processes equal one: each process applies the global batch's draws to its rows."""
    x = normalised(data[0][0][:12])
    generator = torch.Generator().manual_seed(3)
    standard, strong = draw_standard(12, tuple(x.shape[1:]), generator), DEFAULT_POLICY.draw(12, 48, generator)
    whole = DEFAULT_POLICY.apply(apply_standard(x, standard), strong)
    for rows in (Rows(0, 2), Rows(1, 2), Rows(2, 4)):
        part = DEFAULT_POLICY.apply(apply_standard(rows.take(x), standard, rows), strong, rows)
        assert torch.allclose(part, rows.take(whole), atol=1e-5)
    assert torch.allclose(whole.mean(dim=(1, 2, 3)), torch.zeros(12), atol=1e-4)       # normalised again
    assert torch.allclose(whole.std(dim=(1, 2, 3)), torch.ones(12), atol=1e-3)


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_does_what_it_says(data, name):
    x = normalised(data[0][0][:16])
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)   # the window, normalised
    policy = AugmentPolicy(((name, 1.0),), ops_per_crop=1)
    draws = policy.draw(16, 48, torch.Generator().manual_seed(0))
    draws["strength"][:] = 1.0                                         # full strength on every crop
    out = policy.apply(x, draws)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert (out - x).abs().mean() > 0.02                               # it changes every crop
    if name == "blur":                                                 # high frequencies go
        assert (out.diff(dim=-1).abs().mean()) < 0.8 * x.diff(dim=-1).abs().mean()
    if name == "cutout":                                               # a flat square appears
        flat = (out.diff(dim=-1) == 0).flatten(1).sum(1)
        assert (flat > (x.diff(dim=-1) == 0).flatten(1).sum(1) + 20).all()
    if name == "shift":                                                # the hole (bright centre) moves
        centre = torch.arange(48.0)

        def centroid(v):
            weight = v[:, 0].clamp(min=0)
            return (weight.sum(1) * centre).sum(1) / weight.sum((1, 2))

        moved = (centroid(out) - centroid(x)).abs()
        assert moved.max() > 1.0
    untouched = policy.apply(x, {**draws, "uses": torch.zeros_like(draws["uses"])})
    assert torch.allclose(untouched, x, atol=1e-4)                    # crops that did not draw it are unchanged


def test_policy_validation_and_files():
    with pytest.raises(ValueError, match="unknown augmentation 'sharpen'"):
        AugmentPolicy((("sharpen", 0.5),))
    with pytest.raises(ValueError, match="magnitude in"):
        AugmentPolicy((("noise", 1.5),))
    with pytest.raises(ValueError, match="not an augmentation policy"):
        AugmentPolicy.from_dict({"noise": 0.5})
    assert AugmentPolicy.from_dict(json.loads(json.dumps(DEFAULT_POLICY.to_dict()))) == DEFAULT_POLICY


def test_fixmatch_learns_from_unlabelled_crops(data):
    crops, ctf = data
    labelled = np.random.default_rng(0).random(len(crops[0])) < 0.15
    x, y, pool = crops[0][labelled], ctf[0][labelled], np.concatenate([crops[0][~labelled], crops[1]])
    runs = {}
    for name, method in (("supervised", None), ("fixmatch", FixMatch()), ("fixmatch again", FixMatch()),
                         ("never confident", FixMatch(confidence=0.999))):
        torch.manual_seed(0)
        predictor = HoleQualityPredictor("resnet_test", target="bins", input_size=48)
        history = predictor.fit(x, y, epochs=4, batch_size=16, lr=3e-3, progress=False, semi=method,
                                unlabelled=pool if method else None)
        runs[name] = (history, {k: v.clone() for k, v in predictor.model.state_dict().items()})
    history = runs["fixmatch"][0]
    assert (history["confident_fraction"] > 0).all() and (history["unlabelled_loss"] > 0).all()
    assert (runs["never confident"][0]["unlabelled_loss"] == 0).all()
    same = all(torch.equal(runs["fixmatch"][1][k], runs["fixmatch again"][1][k]) for k in runs["fixmatch"][1])
    differs = any(not torch.equal(runs["fixmatch"][1][k], runs["supervised"][1][k]) for k in runs["supervised"][1])
    assert same and differs


def test_fixmatch_needs_bins_and_unlabelled_crops(data):
    crops, ctf = data
    with pytest.raises(ValueError, match="target='bins'"):
        HoleQualityPredictor("resnet_test", input_size=48).fit(crops[0][:32], ctf[0][:32], epochs=1, progress=False,
                                                               semi=FixMatch(), unlabelled=crops[1][:32])
    with pytest.raises(ValueError, match="both a method"):
        HoleQualityPredictor("resnet_test", target="bins", input_size=48).fit(
            crops[0][:32], ctf[0][:32], epochs=1, progress=False, semi=FixMatch())


def test_policy_search_keeps_the_best_of_each_round(data):
    crops, ctf = data

    def make():
        torch.manual_seed(0)
        return HoleQualityPredictor("resnet_test", target="bins", input_size=32)

    best, trials = search_policy(make, crops[0][:96], ctf[0][:96], crops[1][:128], (crops[2][:64], ctf[2][:64]),
                                 candidates=4, epochs=1, batch_size=32)
    assert list(trials["round"]) == [1, 1, 1, 1, 2, 2] and list(trials["epochs"]) == [1] * 4 + [2] * 2
    first = trials[trials["round"] == 1]
    survivors = list(first.sort_values("val_mae", kind="stable")["policy"][:2])
    assert list(trials[trials["round"] == 2]["policy"]) == survivors
    last = trials[trials["round"] == 2]
    assert best.describe() == last.loc[last["val_mae"].idxmin(), "policy"]
    assert first["policy"].iloc[0] == DEFAULT_POLICY.describe()       # the hand-made policy is a candidate


def test_cli_semi_supervised_training_with_a_searched_policy(tmp_path, capsys):
    from cryorl.images.synth_session import simulate_session

    session = simulate_session(tmp_path / "s", seed=2, spec=GridSpec(n_holes=120, n_patches=6, n_squares=2,
                                                                        n_tiles=1), crops=True, progress=False)
    out = tmp_path / "model"
    base = ["perception", "train", "--backbone", "resnet_test", "--input-size", "32", "--epochs", "2", "--data",
            str(session), "--labelled-fraction", "0.3", "--quiet", "--threads", "1"]
    assert main(base + ["--semi-supervised", "fixmatch", "--out", str(out)]) == 2
    assert "target='bins'" in capsys.readouterr().err
    assert main(base + ["--target", "bins", "--semi-supervised", "fixmatch", "--augment-policy", "search",
                        "--policy-trials", "2", "--out", str(out)]) == 0
    metadata = json.loads((out / "config.json").read_text())["metadata"]
    assert metadata["semi_supervised"].startswith("FixMatch") and metadata["labelled_fraction"] == 0.3
    assert (out / "policy_search.csv").read_text().count("\n") == 3           # header + 2 candidates, 1 round
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(metadata["augment_policy"]))
    assert main(base + ["--target", "bins", "--semi-supervised", "fixmatch", "--augment-policy", str(policy),
                        "--out", str(tmp_path / "again")]) == 0
    policy.write_text('{"magnitudes": {"zoom": 0.5}, "ops_per_crop": 2}')
    assert main(base + ["--target", "bins", "--semi-supervised", "fixmatch", "--augment-policy", str(policy),
                        "--out", str(tmp_path / "bad")]) == 2
    assert "unknown augmentation 'zoom'" in capsys.readouterr().err
    assert main(base + ["--target", "bins", "--semi-supervised", "fixmatch", "--labelled-fraction", "1",
                        "--out", str(tmp_path / "none")]) == 2
    assert "needs unlabelled crops" in capsys.readouterr().err
