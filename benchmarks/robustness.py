"""Clean and robust quality of standard vs adversarially trained hole-quality models on simulated crops.

    python benchmarks/robustness.py [--backbone resnet10_small] [--input-size 64] [--epochs 3]
                                    [--train-grids 1 2] [--test-grids 9] [--epsilon 0.05] [--steps 3]

Trains the same backbone twice on the same crops (same seed): plainly, and adversarially (PGD of the given budget,
:mod:`cryorl.perception.robust`), then reports each one's MAE, accuracy at 6 Å and training time on the held-out
grid's crops — clean, under FGSM and under PGD of the same budget.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from cryorl.perception.crops import simulated_crop_dataset
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.robust import Attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10_small")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-grids", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--test-grids", type=int, nargs="+", default=[9])
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    crops, table = simulated_crop_dataset(args.train_grids)
    test_crops, test_table = simulated_crop_dataset(args.test_grids)
    ctf, test_ctf = table["true_ctf"].to_numpy(), test_table["true_ctf"].to_numpy()
    pgd = Attack(args.epsilon, steps=args.steps)
    attacks = {"FGSM": Attack.fgsm(args.epsilon), f"PGD-{args.steps}": pgd}
    rows = []
    for training, adversarial in (("standard", None), (f"adversarial ({pgd.describe()})", pgd)):
        torch.manual_seed(0)
        predictor = HoleQualityPredictor(args.backbone, input_size=args.input_size)
        tic = time.perf_counter()
        predictor.fit(crops, ctf, epochs=args.epochs, progress=False, adversarial=adversarial)
        seconds = time.perf_counter() - tic
        results = {"clean": predictor.evaluate(test_crops, test_ctf)}
        results.update({name: predictor.evaluate_attacked(test_crops, test_ctf, attack)
                        for name, attack in attacks.items()})
        for name, metrics in results.items():
            rows.append({"training": training, "evaluated on": name, "MAE (Å)": metrics["mae"],
                         "accuracy at 6 Å": metrics["accuracy"], "training seconds": seconds})
        print(f"{training}: trained in {seconds:.0f} s", flush=True)
    print(f"\n{args.backbone} at {args.input_size} px, {args.epochs} epochs on grids {args.train_grids} "
          f"({len(crops)} crops), tested on grids {args.test_grids} ({len(test_crops)} crops), ε={args.epsilon:g} "
          "(ℓ∞, in units of an image's standard deviation)")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
