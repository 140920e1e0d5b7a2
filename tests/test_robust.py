"""Adversarial attacks and min-max training of hole-quality models (tiny models, simulated crops)."""
import json

import numpy as np
import pytest
import torch

from cryorl.cli import main
from cryorl.perception.crops import crops_for_table
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.robust import Attack, perturb
from cryorl.synth import GridSpec, simulate_hole_table

SMALL = GridSpec.with_holes(300)


def data(seeds):
    tables = [simulate_hole_table(s, SMALL) for s in seeds]
    crops = np.concatenate([crops_for_table(t, s) for t, s in zip(tables, seeds)])
    return crops, np.concatenate([t["true_ctf"].to_numpy() for t in tables])


@pytest.mark.parametrize("attack", [Attack(0.1, steps=4), Attack(0.5, steps=4, norm="l2"), Attack.fgsm(0.1)])
def test_attacks_stay_in_budget_and_raise_the_loss(attack):
    torch.manual_seed(0)
    predictor = HoleQualityPredictor("resnet_test", input_size=48)
    crops, ctf = data([1])
    x, y = predictor.preprocess(crops[:64]), torch.as_tensor(predictor.targets(ctf[:64]), dtype=torch.float32)
    predictor.model.train()
    adversarial = perturb(predictor.model, predictor.loss, x, y, attack, torch.Generator().manual_seed(0))
    assert predictor.model.training                                   # the mode is restored
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(dim=1) if attack.norm == "linf" else delta.norm(dim=1)
    assert (size <= attack.epsilon * (1 + 1e-4)).all() and size.min() > 0.5 * attack.epsilon
    if attack.steps == 1:                                             # FGSM: one signed step of ε everywhere
        assert torch.allclose(delta.abs()[delta != 0], torch.tensor(attack.epsilon))
    predictor.model.eval()
    with torch.no_grad():
        clean, attacked = (predictor.loss(predictor.model(v), y).item() for v in (x, adversarial))
    assert attacked > clean


def test_adversarial_training_is_more_robust_than_standard_training():
    crops, ctf = data([1, 2, 4])
    held_crops, held_ctf = data([3])
    attack = Attack(0.1, steps=3)
    robust_mae = {}
    for name, adversarial in (("standard", None), ("adversarial", attack)):
        torch.manual_seed(0)
        predictor = HoleQualityPredictor("resnet_test", input_size=48)
        predictor.fit(crops, ctf, epochs=4, batch_size=32, lr=3e-3, progress=False, adversarial=adversarial)
        clean = predictor.evaluate(held_crops, held_ctf)["mae"]
        robust_mae[name] = predictor.evaluate_attacked(held_crops, held_ctf, attack)["mae"]
        assert robust_mae[name] > clean                                # the attack hurts either model
    assert robust_mae["adversarial"] < 0.8 * robust_mae["standard"], robust_mae


def test_cli_adversarial_training_and_attack(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["perception", "train", "--backbone", "resnet_test", "--input-size", "48", "--epochs", "1",
                 "--grids", "1", "--val-grids", "8", "--adversarial", "fgsm", "--epsilon", "0.05", "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["metadata"]["adversarial"] == "FGSM linf ε=0.05"
    capsys.readouterr()
    assert main(["perception", "attack", "--model", str(out), "--grids", "9", "--epsilon", "0.05",
                 "--attack-steps", "2", "--quiet", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "clean" in printed and "PGD-2 linf ε=0.05" in printed
    assert main(["perception", "attack", "--model", str(out), "--epsilon", "-1", "--quiet"]) == 2
