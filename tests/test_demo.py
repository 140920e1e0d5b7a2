from cryorl.cli import main


def test_demo_writes_a_map(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "good exposures (mean)" in out and "2341 holes" in out
    png = tmp_path / "random_episode_map.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
