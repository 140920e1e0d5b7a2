"""`cryorl data download` against a local HTTP server on 127.0.0.1 serving the shared training split."""
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cryorl.cli import main
from cryorl.download import DATASETS, DownloadError, download_dataset, sha256

pytestmark = pytest.mark.network
TRAIN_FILES = ["target_CTF_Y1_train.csv", "Y1_2_regress_8bit_res50_train_by_hl.txt", "timestamps.csv"]
VERIFIED = TRAIN_FILES[:2]
# The shared timestamps.csv keeps only the training split's rows, so it is *not* the published file: served as is,
# the download must refuse it while keeping the verified files.


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path, aldolase_dir):
    root = tmp_path / "served"
    root.mkdir()
    for name in TRAIN_FILES:
        shutil.copy(aldolase_dir / name, root / name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_published_digests_match_the_shared_files(aldolase_dir):
    digests = {f.name: f.sha256 for f in DATASETS[("aldolase", "2023")].files}
    for name in VERIFIED:
        assert sha256(aldolase_dir / name) == digests[name]
    assert sha256(aldolase_dir / "timestamps.csv") != digests["timestamps.csv"]


def test_download_verifies_and_skips_good_copies(server, tmp_path):
    _, url = server
    dest = tmp_path / "data"
    log = []
    with pytest.raises(DownloadError, match=r"1 file\(s\) failed:\n.*timestamps.csv: SHA-256 4f59fcab\w+ does not "
                                            r"match the published 4a0f1828\w+; refusing the file"):
        download_dataset("aldolase", dest, split="train", base_url=url, log=log.append)
    assert sorted(p.name for p in dest.iterdir()) == sorted(VERIFIED)
    assert [line.split()[0] for line in log] == ["fetched", "fetched", "FAILED"]
    log.clear()
    with pytest.raises(DownloadError):
        download_dataset("aldolase", dest, split="train", base_url=url, log=log.append)
    assert [line.split()[0] for line in log] == ["ok", "ok", "FAILED"]


def test_corrupt_download_is_refused_and_good_copy_kept(server, tmp_path):
    root, url = server
    dest = tmp_path / "data"
    name = VERIFIED[0]
    with pytest.raises(DownloadError):
        download_dataset("aldolase", dest, split="train", base_url=url, log=lambda _: None)
    good = (dest / name).read_bytes()
    (dest / name).write_bytes(good[:-10])                          # a damaged local copy
    (root / name).write_bytes(good.replace(b"21mar02c", b"21mar03c"))   # and a corrupt server file
    with pytest.raises(DownloadError, match=rf"{name}: SHA-256 \w+ does not match the published 1ce0e1a9\w+; "
                                            r"refusing the file \(the existing file is kept\)"):
        download_dataset("aldolase", dest, split="train", base_url=url, log=lambda _: None)
    assert (dest / name).read_bytes() == good[:-10]             # not replaced by the corrupt one
    assert not [p for p in dest.iterdir() if p.name.endswith(".part")]
    (dest / name).unlink()
    with pytest.raises(DownloadError):
        download_dataset("aldolase", dest, split="train", base_url=url, log=lambda _: None)
    assert not (dest / name).exists()


def test_missing_remote_file_is_reported(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match=r"target_CTF_Y1_val.csv: HTTP Error 404"):
        download_dataset("aldolase", tmp_path / "d", split="val", base_url=url, log=lambda _: None)


def test_cli_download_then_info(server, tmp_path, capsys):
    _, url = server
    dest = tmp_path / "data"
    assert main(["data", "download", "aldolase", "--dest", str(dest), "--split", "train", "--base-url", url]) == 1
    assert "refusing the file" in capsys.readouterr().err      # the shared timestamps subset
    assert main(["data", "info", str(dest), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "1197 holes in 60 patches, 9 squares, 6 tiles" in out
    assert "fraction good (<= 6 A)                             0.451" in out
    assert main(["data", "info", str(tmp_path / "missing"), "--split", "val"]) == 2
    assert "cryorl data download aldolase" in capsys.readouterr().err
