"""Trains a tiny predictor on 192 simulated crops, one process or (under torchrun) one of many; rank 0 saves the
weights and the history. Used by tests/test_distributed.py: ``python distributed_worker.py OUT [--accumulate N]
[--compression fp16] [--adversarial]`` or ``torchrun --nproc-per-node 2 distributed_worker.py OUT --distributed``."""
import argparse
import json

import torch

from cryorl.perception import distributed
from cryorl.perception.crops import crops_for_table
from cryorl.perception.predictor import HoleQualityPredictor
from cryorl.perception.robust import Attack
from cryorl.synth import GridSpec, simulate_hole_table

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--distributed", action="store_true")
parser.add_argument("--accumulate", type=int, default=1)
parser.add_argument("--compression", default="none")
parser.add_argument("--adversarial", action="store_true")
args = parser.parse_args()
torch.set_num_threads(1)
processes = distributed.start("gloo") if args.distributed else distributed.current()
table = simulate_hole_table(1, GridSpec.with_holes(200))
crops, ctf = crops_for_table(table, 1)[:192], table["true_ctf"].to_numpy()[:192]
torch.manual_seed(0)
predictor = HoleQualityPredictor("resnet_test", input_size=32)
history = predictor.fit(crops, ctf, validation=(crops[:48], ctf[:48]), epochs=3, batch_size=32, lr=5e-3, progress=False,
                        accumulate=args.accumulate, compression=args.compression,
                        adversarial=Attack(0.05, steps=2) if args.adversarial else None)
if processes.main:
    torch.save(predictor.model.state_dict(), f"{args.out}/model.pt")
    with open(f"{args.out}/history.json", "w") as file:
        json.dump(history.drop(columns="seconds").to_dict(orient="records"), file)
distributed.stop()
