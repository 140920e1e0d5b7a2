"""The published hole crops: verified parallel download (against a loopback server), the crop folder layout read by
every perception command, the papers' recipe, and scoring a predictions file."""
from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.io import imsave

from cryorl.cli import main
from cryorl.crop_store import CropFile, crop_manifest, download_crops
from cryorl.download import DownloadError
from cryorl.images.mrc import write_mrc
from cryorl.perception.crops import load_crops, simulated_crop_dataset

SHARED_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "aldolase-crops-manifest.csv"
CTF = "target_CTF_Y1_train.csv"
PREDICTIONS = "Y1_2_regress_8bit_res50_train_by_hl.txt"


class _Counting(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def crop_server(tmp_path):
    """Serve 12 generated 8-bit PNG crops in the published layout; yields (root, url, manifest, requests)."""
    root = tmp_path / "served"
    rng = np.random.default_rng(0)
    manifest = []
    for i in range(12):
        split = "train" if i < 8 else "val"
        path = f"Aldolase/{split}/sim_00001gr_00001sq_v01_{i // 4 + 1:05d}hl_v01_{i + 1:05d}en-a_crop.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        imsave(root / path, rng.integers(0, 256, (150, 150), dtype=np.uint8), check_contrast=False)
        data = (root / path).read_bytes()
        manifest.append(CropFile(path, hashlib.sha256(data).hexdigest(), len(data)))
    handler = type("Handler", (_Counting,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", manifest, handler.requests
    httpd.shutdown()
    httpd.server_close()


def test_the_shipped_manifest_is_the_published_one():
    shipped = crop_manifest()
    assert len(shipped) == 3538 and sum(f.size for f in shipped) == 214_856_971
    assert sum(f.split == "train" for f in shipped) == 1197
    if SHARED_MANIFEST.exists():
        assert shipped == crop_manifest(SHARED_MANIFEST)


def test_download_verifies_resumes_and_never_replaces(crop_server, tmp_path):
    root, url, manifest, requests = crop_server
    dest = tmp_path / "aldolase"
    download_crops(dest, base_url=url, manifest=manifest, workers=4, progress=False, log=lambda *_: None)
    for remote in manifest:
        assert (dest / remote.path).read_bytes() == (root / remote.path).read_bytes()
    assert len(requests) == 12
    # resumable: only what is missing is fetched again
    for remote in manifest[:3]:
        (dest / remote.path).unlink()
    requests.clear()
    download_crops(dest, base_url=url, manifest=manifest, split="train", progress=False, log=lambda *_: None)
    assert sorted(requests) == sorted("/" + r.path for r in manifest[:3])
    # a corrupt file on the server is refused and named; the others are still fetched; a differing local file stays
    bad, mine = manifest[4], manifest[5]
    (root / bad.path).write_bytes(b"\x89PNG not really")
    (dest / bad.path).unlink()
    (dest / mine.path).write_bytes(b"my own edit")
    (dest / manifest[9].path).unlink()
    with pytest.raises(DownloadError, match=rf"2 of 12 crops failed \(10 verified .*run again to resume\): .*"
                                            rf"{Path(mine.path).name} exists and differs") as error:
        download_crops(dest, base_url=url, manifest=manifest, progress=False, log=lambda *_: None)
    assert f"{bad.path}: 15 bytes with SHA-256" in str(error.value) and "\n" not in str(error.value)
    assert not (dest / bad.path).exists() and (dest / mine.path).read_bytes() == b"my own edit"
    assert (dest / manifest[9].path).exists()
    assert not list(dest.rglob("*.part"))


def test_cli_download_failure_is_one_line(tmp_path, capsys):
    assert main(["data", "download", "aldolase", "--crops", "--split", "train", "--dest", str(tmp_path / "d"),
                 "--base-url", "http://127.0.0.1:9", "--workers", "16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryorl: 1197 of 1197 crops failed (0 verified") and err.count("\n") == 1


@functools.cache
def rendered_crops() -> np.ndarray:
    return simulated_crop_dataset([1])[0][:48]


def published_layout(aldolase_dir, dest, holes=48, *, depth=np.uint8, kind="png"):
    """A CryoRL folder with a crop folder in the published layout: the first ``holes`` holes of the training split,
    each with a rendered crop saved as ``Aldolase/train/<hole>_crop.<kind>``."""
    dest.mkdir()
    ctf = pd.read_csv(aldolase_dir / CTF, header=None).iloc[:holes]
    ctf.to_csv(dest / CTF, header=False, index=False)
    shutil.copy(aldolase_dir / PREDICTIONS, dest / PREDICTIONS)
    crops = rendered_crops()[:holes]
    scale = np.iinfo(depth).max / crops.max() if kind == "png" else 1.0
    folder = dest / "Aldolase" / "train"
    folder.mkdir(parents=True)
    for name, crop in zip(ctf[0], crops):
        if kind == "png":
            imsave(folder / f"{name}_crop.png", (crop * scale).astype(depth), check_contrast=False)
        else:
            write_mrc(folder / f"{name}_crop.mrc", crop.astype(np.float32), 200.0)
    return dest, list(ctf[0]), ctf[3].to_numpy()


@pytest.mark.parametrize("depth, kind", [(np.uint8, "png"), (np.uint16, "png"), (np.float32, "mrc")])
def test_crop_folders_of_any_depth_load_by_hole_name(aldolase_dir, tmp_path, depth, kind):
    data, names, _ = published_layout(aldolase_dir, tmp_path / "d", 6, depth=depth, kind=kind)
    loaded, crops = load_crops(data / "Aldolase" / "train")
    assert loaded == sorted(names) and crops.shape == (6, 150, 150)
    reference = rendered_crops()
    order = [names.index(n) for n in loaded]
    assert np.corrcoef(crops[0].ravel(), reference[order[0]].ravel())[0, 1] > 0.999


def test_train_evaluate_predict_and_score_on_the_published_layout(aldolase_dir, tmp_path, capsys):
    data, names, ctf = published_layout(aldolase_dir, tmp_path / "aldolase")
    model = tmp_path / "model"
    assert main(["perception", "train", "--data", str(data), "--split", "train", "--recipe", "papers",
                 "--backbone", "resnet_test", "--epochs", "1", "--batch-size", "16", "--out", str(model),
                 "--quiet", "--threads", "1"]) == 0
    config = (model / "config.json").read_text()
    assert '"loss": "l2"' in config and '"input_size": 224' in config          # the papers' recipe, overridden
    assert main(["perception", "evaluate", "--model", str(model), "--data", str(data), "--quiet"]) == 0
    assert "mae" in capsys.readouterr().out
    predictions = tmp_path / "predictions.txt"
    assert main(["perception", "predict", "--model", str(model), "--data", str(data), "--out", str(predictions),
                 "--quiet"]) == 0
    written = pd.read_csv(predictions, sep=" ", header=None)
    assert sorted(written[0]) == sorted(names)
    capsys.readouterr()
    assert main(["perception", "score", str(predictions), "--data", str(data)]) == 0
    scores = dict(line.split() for line in capsys.readouterr().out.splitlines())
    truth = np.clip(ctf, 0, 20)
    predicted = np.clip(written.set_index(0).loc[names, 1].to_numpy(), 0, 20)
    assert float(scores["mae"]) == pytest.approx(np.abs(truth - predicted).mean(), abs=1e-3)
    assert scores["holes"] == "48"


def test_score_reproduces_the_published_training_figures(aldolase_dir, capsys):
    assert main(["perception", "score", str(aldolase_dir / PREDICTIONS), "--data", str(aldolase_dir)]) == 0
    scores = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert round(float(scores["mae"]), 2) == 1.97 and round(float(scores["pearson_r"]), 2) == 0.71
    assert scores["holes"] == "1197"
