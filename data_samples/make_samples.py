"""Regenerate data_samples/session: a small simulated session in the real file formats (about 4 MB).

    python data_samples/make_samples.py            # writes data_samples/session/ (deterministic: seed 11)
    cryorl look data_samples/session               # renders data_samples/session/look/*.png

One atlas tile, two squares, four patches with their hole crops, the CryoRL CTF and predictions files, the hole
table and a simulated operator's timestamps. Squares are imaged at 0.125 µm/pixel (640 × 640) and patches at
20 nm/pixel (384 × 384) to keep the files small; a full `cryorl simulate` session uses 800 × 800 and 576 × 576.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cryorl.images.imaging import Magnification
from cryorl.images.look import look_at_session
from cryorl.images.synth_session import simulate_session
from cryorl.synth import GridSpec

HERE = Path(__file__).resolve().parent
SAMPLE_SPEC = GridSpec(n_holes=30, n_patches=4, n_squares=2, n_tiles=1, min_holes_per_patch=5,
                       max_holes_per_patch=9)
SAMPLE_SQUARE = Magnification("square", 0.125, (640, 640), 120.0)
SAMPLE_PATCH = Magnification("patch", 0.02, (384, 384), 400.0)


def main() -> int:
    out = HERE / "session"
    if out.exists():
        shutil.rmtree(out)
    simulate_session(out, seed=11, spec=SAMPLE_SPEC, crops=True, split="sample", square_mag=SAMPLE_SQUARE,
                     patch_mag=SAMPLE_PATCH, progress=False)
    for path in look_at_session(out):
        print(path)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
