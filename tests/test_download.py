"""`cryorl data download` against a local HTTP server on 127.0.0.1 serving the shared training split."""
import functools
import shutil
import socket
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cryorl.cli import main
from cryorl.download import DATASETS, MAX_BYTES, DownloadError, download_dataset, sha256

pytestmark = pytest.mark.network
TRAIN_FILES = ["target_CTF_Y1_train.csv", "Y1_2_regress_8bit_res50_train_by_hl.txt", "timestamps.csv"]
VERIFIED = TRAIN_FILES[:2]
# The shared timestamps.csv keeps only the training split's rows, so it is *not* the published file: served as is,
# the download must refuse it while keeping the verified files.


HARD_CAP = 50 << 20          # a misbehaving test handler never sends more than this


class _Quiet(SimpleHTTPRequestHandler):
    special: dict[str, Callable[[SimpleHTTPRequestHandler], None]] = {}   # file name -> its own response

    def do_GET(self):
        respond = self.special.get(self.path.lstrip("/"))
        if respond is None:
            super().do_GET()
        else:
            self.connection.settimeout(5)
            respond(self)

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve(tmp_path, aldolase_dir):
    """Start a server on 127.0.0.1 for the shared training files, with optional misbehaving responses."""
    root = tmp_path / "served"
    root.mkdir()
    for name in TRAIN_FILES:
        shutil.copy(aldolase_dir / name, root / name)
    servers = []

    def start(special: dict | None = None) -> tuple:
        handler = type("Handler", (_Quiet,), {"special": special or {}})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return root, f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def server(serve):
    return serve()


class _Endless:
    """Streams without end until the client hangs up (at most HARD_CAP); records the bytes the socket accepted."""

    def __init__(self, content_length: int | None = None):
        self.content_length = content_length
        self.sent = 0
        self.done = threading.Event()

    def __call__(self, handler: SimpleHTTPRequestHandler) -> None:
        # a small send buffer, so that ``sent`` follows what the client read rather than megabytes of kernel buffers
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        try:
            handler.send_response(200)
            if self.content_length is not None:
                handler.send_header("Content-Length", str(self.content_length))
            handler.end_headers()
            block = b"x" * (1 << 16)
            while self.sent < HARD_CAP:
                handler.wfile.write(block)
                self.sent += len(block)
        except OSError:                     # the client hung up (reset, broken pipe) or stopped reading (timeout)
            pass
        finally:
            self.done.set()


def _truncated(data: bytes, keep: int, chunked: bool) -> Callable[[SimpleHTTPRequestHandler], None]:
    """Announce all of ``data`` (as its Content-Length, or as one chunk) but send only its first ``keep`` bytes,
    then close the connection."""
    def respond(handler: SimpleHTTPRequestHandler) -> None:
        handler.send_response(200)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n" % len(data) + data[:keep])
        else:
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[:keep])
        handler.close_connection = True
    return respond


def test_published_digests_match_the_shared_files(aldolase_dir):
    digests = {f.name: f.sha256 for f in DATASETS[("aldolase", "2023")].files}
    for name in VERIFIED:
        assert sha256(aldolase_dir / name) == digests[name]
    assert sha256(aldolase_dir / "timestamps.csv") != digests["timestamps.csv"]


def test_download_verifies_and_skips_good_copies(server, tmp_path):
    _, url = server
    dest = tmp_path / "data"
    log = []
    with pytest.raises(DownloadError, match=r"1 file\(s\) failed: .*timestamps.csv: SHA-256 4f59fcab\w+ does not "
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
    with pytest.raises(DownloadError, match=rf"{name} exists and differs from the published file; move it away "
                                            r"or pass --overwrite"):
        download_dataset("aldolase", dest, split="train", base_url=url, log=lambda _: None)
    with pytest.raises(DownloadError, match=rf"{name}: SHA-256 \w+ does not match the published 1ce0e1a9\w+; "
                                            r"refusing the file \(the existing file is kept\)"):
        download_dataset("aldolase", dest, split="train", base_url=url, overwrite=True, log=lambda _: None)
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
    assert main(["data", "download", "aldolase", "--dest", str(dest), "--split", "train", "--base-url", url]) == 2
    assert "refusing the file" in capsys.readouterr().err      # the shared timestamps subset
    assert main(["data", "info", str(dest), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "1197 holes in 60 patches, 9 squares, 6 tiles" in out
    assert "fraction good (<= 6 A)                             0.451" in out
    assert main(["data", "info", str(tmp_path / "missing"), "--split", "val"]) == 2
    assert "cryorl data download aldolase" in capsys.readouterr().err


def _fetched(dest, root, expected: list[str]) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)      # no .part file left behind
    for name in expected:
        assert (dest / name).read_bytes() == (root / name).read_bytes()


def test_sizes_are_exact_where_known_else_a_ceiling(aldolase_dir):
    files = {f.name: f for f in DATASETS[("aldolase", "2023")].files}
    for name in VERIFIED:
        assert files[name].max_bytes == files[name].size == (aldolase_dir / name).stat().st_size
    assert files["timestamps.csv"].size is None and files["timestamps.csv"].max_bytes == MAX_BYTES
    assert all(f.max_bytes <= MAX_BYTES for d in DATASETS.values() for f in d.files)


def test_endless_stream_stops_at_the_expected_size(serve, tmp_path):
    name = VERIFIED[0]
    endless = _Endless()
    root, url = serve({name: endless})
    dest = tmp_path / "data"
    log = []
    with pytest.raises(DownloadError) as caught:
        download_dataset("aldolase", dest, split="train", base_url=url, timeout=5, log=log.append)
    message = str(caught.value)
    assert message.startswith("2 file(s) failed: ") and "\n" not in message
    assert f"{url}/{name}: the server sent more than the expected 147131 bytes; refusing the file" in message
    assert [line.split()[0] for line in log] == ["FAILED", "fetched", "FAILED"]      # the others were still tried
    _fetched(dest, root, VERIFIED[1:])
    assert endless.done.wait(5)
    assert endless.sent < 2 << 20                     # the client hung up soon after the limit, far from HARD_CAP


def test_oversized_content_length_is_refused_before_reading(serve, tmp_path):
    name = VERIFIED[1]
    endless = _Endless(content_length=10 ** 9)
    root, url = serve({name: endless})
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match=rf"{url}/{name}: the server announces 1000000000 bytes, more than the "
                                            r"expected 75731; refusing the file"):
        download_dataset("aldolase", dest, split="train", base_url=url, timeout=5, log=lambda _: None)
    _fetched(dest, root, VERIFIED[:1])
    assert endless.done.wait(5)
    assert endless.sent < 2 << 20


@pytest.mark.parametrize("chunked, reason", [
    (False, "the connection closed after 1000 of the announced 75731 bytes"),
    (True, "the connection closed before the end of the response"),
], ids=["content-length", "chunked"])
def test_broken_connection_is_a_clear_error_and_others_are_fetched(serve, tmp_path, aldolase_dir, chunked, reason):
    name = VERIFIED[1]
    root, url = serve({name: _truncated((aldolase_dir / name).read_bytes(), 1000, chunked)})
    dest = tmp_path / "data"
    log = []
    with pytest.raises(DownloadError) as caught:
        download_dataset("aldolase", dest, split="train", base_url=url, timeout=5, log=log.append)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("2 file(s) failed: ")
    assert f"could not fetch {url}/{name}: {reason}; " in message
    assert "timestamps.csv: SHA-256" in message
    assert [line.split()[0] for line in log] == ["fetched", "FAILED", "FAILED"]
    _fetched(dest, root, VERIFIED[:1])


def test_refused_connection_is_a_clear_error(tmp_path):
    dest = tmp_path / "d"
    with pytest.raises(DownloadError, match=r"^3 file\(s\) failed: could not reach http://127\.0\.0\.1:1 for "
                                            r"target_CTF_Y1_val\.csv, Y1_2_regress_8bit_res50_val_by_hl\.txt, "
                                            r"timestamps\.csv: [^\n;]+; without network, copy the files from "
                                            rf"https://\S+ into {dest} by hand and check them with `cryorl data "
                                            rf"verify {dest}`$") as error:
        download_dataset("aldolase", dest, split="val", base_url="http://127.0.0.1:1", timeout=5,
                         log=lambda _: None)
    assert str(error.value).count("http://127.0.0.1:1") == 1        # the address once, not once per file


def test_files_placed_by_hand_are_verified(tmp_path, aldolase_dir, capsys):
    folder = tmp_path / "by-hand"
    folder.mkdir()
    for name in VERIFIED:
        shutil.copy(aldolase_dir / name, folder / name)
    assert main(["data", "verify", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "ok       target_CTF_Y1_train.csv" in out and "absent   target_CTF_Y1_val.csv" in out
    assert "2 file(s) verified" in out
    shutil.copy(aldolase_dir / "timestamps.csv", folder / "timestamps.csv")      # the shared copy is trimmed
    assert main(["data", "verify", str(folder)]) == 2
    assert "1 file(s) in" in capsys.readouterr().err
