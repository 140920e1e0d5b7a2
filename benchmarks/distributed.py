"""Distributed data-parallel training on CPU: 2 gloo processes against 1 process, equality and speed.

    python benchmarks/distributed.py [--backbone resnet10_small] [--input-size 48] [--holes 1024] [--epochs 2]
                                     [--batch-size 64] [--cores 2]

Trains the same predictor on the same simulated crops (one grid of ``--holes`` holes, seed 1) three ways:
1 process with all ``--cores`` threads; 1 process accumulating 2 micro-batches (the single-process twin of 2
processes, on as many threads as each of them: a different thread count sums in a different order, and Adam
amplifies the rounding); and 2 processes under torchrun (gloo, ``--cores``/2 threads each, optionally with gradient
compression). Prints each run's training crops/s (rendering and start-up excluded), the largest weight difference
between the 2-process run and its single-process twin, and their validation MAEs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def worker(args: argparse.Namespace) -> None:
    from cryorl.perception import distributed
    from cryorl.perception.crops import crops_for_table
    from cryorl.perception.predictor import HoleQualityPredictor
    from cryorl.synth import GridSpec, simulate_hole_table

    processes = distributed.start("gloo") if args.processes > 1 else distributed.current()
    torch.set_num_threads(args.threads)
    spec = GridSpec.with_holes(args.holes)
    table, val = simulate_hole_table(1, spec), simulate_hole_table(8, spec)
    crops, val_crops = crops_for_table(table, 1), crops_for_table(val, 8)
    torch.manual_seed(0)
    predictor = HoleQualityPredictor(args.backbone, input_size=args.input_size)
    tic = time.perf_counter()
    history = predictor.fit(crops, table["true_ctf"].to_numpy(), epochs=args.epochs, batch_size=args.batch_size,
                            progress=False, accumulate=args.accumulate, compression=args.compression)
    seconds = time.perf_counter() - tic
    if processes.main:
        torch.save(predictor.model.state_dict(), Path(args.out) / "model.pt")
        metrics = predictor.evaluate(val_crops, val["true_ctf"].to_numpy())
        (Path(args.out) / "result.json").write_text(json.dumps({
            "crops_per_second": len(crops) * args.epochs / seconds, "seconds": seconds,
            "train_loss": float(history["train_loss"].iloc[-1]), "val_mae": metrics["mae"]}))
    distributed.stop()


def run(args: argparse.Namespace, folder: Path, processes: int, accumulate: int = 1, compression: str = "none",
        threads: int | None = None) -> dict:
    folder.mkdir()
    threads = threads or max(1, args.cores // processes)
    common = [__file__, "--worker", "--out", str(folder), "--processes", str(processes), "--accumulate",
              str(accumulate), "--compression", compression, "--threads", str(threads),
              "--backbone", args.backbone, "--input-size", str(args.input_size), "--holes", str(args.holes),
              "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    subprocess.run(launcher + common, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((folder / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet10_small")
    parser.add_argument("--input-size", type=int, default=48)
    parser.add_argument("--holes", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--accumulate", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--compression", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        results = {"1 process": run(args, scratch / "one", 1),
                   "1 process, 2 micro-batches": run(args, scratch / "twin", 1, accumulate=2,
                                                     threads=max(1, args.cores // 2)),
                   "2 processes (gloo)": run(args, scratch / "two", 2),
                   "2 processes, fp16 gradients": run(args, scratch / "fp16", 2, compression="fp16"),
                   "2 processes, PowerSGD rank 2": run(args, scratch / "powersgd", 2, compression="powersgd")}
        a, b = (torch.load(scratch / name / "model.pt", weights_only=True) for name in ("two", "twin"))
        difference = max((a[k].double() - b[k].double()).abs().max().item() for k in a if "num_batches" not in k)
    base = results["1 process"]["crops_per_second"]
    print(f"{args.backbone} at {args.input_size} px, {args.holes} crops × {args.epochs} epochs, global batch "
          f"{args.batch_size}, {args.cores} cores")
    print(f"{'run':32s} {'crops/s':>8s} {'speed-up':>8s} {'val MAE':>8s}")
    for name, result in results.items():
        print(f"{name:32s} {result['crops_per_second']:8.0f} {result['crops_per_second'] / base:8.2f} "
              f"{result['val_mae']:8.3f}")
    print(f"largest weight difference, 2 processes vs 1 process with 2 micro-batches: {difference:.2e}")


if __name__ == "__main__":
    main()
