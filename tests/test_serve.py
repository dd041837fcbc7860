"""`jaxmusic serve` as a client sees it: a real server (the CLI, in a subprocess, on a
free port of 127.0.0.1) over tiny trained runs, real audio files (tests/audio_fixtures),
HTTP from the standard library, and headless Chromium for the page.

References: `jaxmusic predict --json` on the same files (the API must give its
answer, also for a run on the musicnn view), the runs' own run.json, the recipes
computed here with librosa, the server's peak RSS (/proc), and the sequential answer
for each clip under concurrent load.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e '.[serve]')")

from jaxmusic.serve.client import (ServeProcess, multipart_body, peak_rss_growth_mb, post_audio,  # noqa: E402
                                   request_json)
from tests import audio_fixtures as af  # noqa: E402
from tests.test_train import REPO, tiny  # noqa: E402

MAX_MB = 5
CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def serve_runs(tiny_prepared, tmp_path_factory):
    """Two genre runs (an LSTM and an image-style CNN) and a multitask emotion run."""
    from jaxmusic.train import train

    root = tmp_path_factory.mktemp("serve_runs")
    for name, config in (("lstm_genre", "lstm"), ("cnn3_genre", "cnn3"), ("emotion", "multitask")):
        train(tiny(config, tiny_prepared, **{"train.epochs": 1}), root / name, progress=False)
    return root


@pytest.fixture(scope="module")
def server(serve_runs):
    s = ServeProcess(["--workdir", str(serve_runs / "lstm_genre"), "--workdir", str(serve_runs / "cnn3_genre"),
                      "--emotion-workdir", str(serve_runs / "emotion"), "--max-mb", str(MAX_MB),
                      "--max-minutes", "5", "--quiet",
                      # a 50 ms batching window (default 10): with the 10 ms one, concurrent requests
                      # whose decoding is slowed by a busy machine (the other test worker) arrived
                      # one per model call, and the batching test failed once in a full suite
                      "--batch-wait-ms", "50"], cwd=REPO, env={"PYTHONPATH": str(REPO)})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def musicnn_server(tmp_path_factory):
    """A server over a tiny CNN trained on the musicnn view (three 'genres' of synthesised
    music in the musicnn recipe), admitting at most one prediction at a time."""
    from jaxmusic.config import load_config
    from jaxmusic.train import train

    root = af.prepared_musicnn_set(tmp_path_factory.mktemp("mnserve"), "mn")
    cfg = load_config(REPO / "configs" / "tiny" / "cnn.py",
                      [f"--config.data.prepared={root / 'prep'}", "--config.data.set=mn",
                       "--config.data.view=musicnn", "--config.train.epochs=1", "--config.train.batch_size=4"])
    train(cfg, root / "musicnn_cnn", progress=False)
    s = ServeProcess(["--workdir", str(root / "musicnn_cnn"), "--max-queue", "1", "--max-minutes", "5",
                      "--quiet"], cwd=REPO, env={"PYTHONPATH": str(REPO)})
    s.run_dir = root / "musicnn_cnn"
    yield s
    s.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Real audio files: an 8 s FLAC and a 45 s WAV (windows 0-30 s and 30-45 s)."""
    d = tmp_path_factory.mktemp("clips")
    return {"short": af.write_audio(d / "short clip.flac", af.song(3, 8.0)),
            "long": af.write_audio(d / "long.wav", np.concatenate([af.song(1, 25.0), af.song(2, 20.0)]))}


# ----------------------------------------------------------------------------- HTTP helpers


def request(url: str, data: bytes | None = None, content_type: str | None = None) -> tuple[int, dict]:
    return request_json(url, data, content_type, timeout=120)


def post_file(server: ServeProcess, path: Path | None = None, **kwargs) -> tuple[int, dict]:
    return post_audio(server.url, path, timeout=120, **kwargs)


def cli_predict(paths: list[Path], genre: Path, emotion: Path | None = None) -> list[dict]:
    more = ["--emotion-workdir", str(emotion)] if emotion else []
    p = subprocess.run([sys.executable, "-m", "jaxmusic", "predict", *map(str, paths), "--workdir", str(genre),
                        *more, "--json"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stdout + p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def assert_same_prediction(api: dict, cli: dict) -> None:
    """Same labels in the same order and the same numbers (to the printed 4 decimals;
    the server batches windows with other requests, so allow one unit of rounding)."""
    assert api["file"] == Path(cli["file"]).name
    assert [g["label"] for g in api["genres"]] == [g["label"] for g in cli["genres"]]
    np.testing.assert_allclose([g["probability"] for g in api["genres"]],
                               [g["probability"] for g in cli["genres"]], atol=1.5e-4)
    assert (api["emotion"] is None) == (cli["emotion"] is None)
    if cli["emotion"] is not None:
        assert api["emotion"].keys() == cli["emotion"].keys()
        np.testing.assert_allclose(list(api["emotion"].values()), list(cli["emotion"].values()), atol=1.5e-4)


def pixels_of(picture: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(picture["data"]), np.uint8).reshape(picture["frames"], picture["bins"])


def wait_for(condition, what: str, seconds: float = 120):
    """Poll ``condition()`` until it is true (a wait for the server, not a timed check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def streamed_wav(path: Path, y: np.ndarray, sr: int = 22050) -> Path:
    """A complete WAV with the header SoX writes to a pipe: data size 0x7FFFF000 (and the
    RIFF size to match), the length unknown while writing."""
    af.write_audio(path, y, sr, "PCM_16")
    b = bytearray(path.read_bytes())
    at = b.find(b"data")
    b[at + 4: at + 8] = struct.pack("<I", 0x7FFFF000)
    b[4:8] = struct.pack("<I", 0x7FFFF000 + at)
    path.write_bytes(bytes(b))
    return path


def huge_rate_flac(path: Path, seconds: int = 30, sr: int = 655_350, channels: int = 8) -> Path:
    """The issue's upload: a constant signal at 655,350 Hz in 8 channels, ~170 KB of FLAC
    for 30 s (a whole-file float32 read is frames x channels x 4 B = 629 MB)."""
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=channels, format="FLAC", subtype="PCM_16") as f:
        block = np.full((sr, channels), 0.25, np.float32)
        for _ in range(seconds):
            f.write(block)
    return path


# ----------------------------------------------------------------------------- API


def test_models_lists_the_loaded_runs(server, serve_runs):
    status, out = request(f"{server.url}/api/models")
    assert status == 200
    assert [m["name"] for m in out["models"]] == ["lstm_genre", "cnn3_genre"] and out["default"] == "lstm_genre"
    for m in out["models"]:
        record = json.loads((serve_runs / m["name"] / "run.json").read_text())
        assert m["labels"] == record["label_names"] and m["view"] == record["view"]
        assert m["beat"] == record["beat"] and m["max_length"] == record["max_length"]
    assert out["models"][1]["backbone"] == "cnn3_dense" and out["models"][1]["resize"] == [32, 32]
    assert out["emotion"]["name"] == "emotion" and out["emotion"]["labels"] == ["valence", "energy", "danceability"]
    assert out["limits"] == {"max_mb": MAX_MB, "max_minutes": 5, "max_samples_per_second": 384_000,
                             "max_queue": 64}


def test_answer_equals_jaxmusic_predict_json(server, serve_runs, clips):
    cli = cli_predict([clips["short"], clips["long"]], serve_runs / "lstm_genre", serve_runs / "emotion")
    for path, expected in zip((clips["short"], clips["long"]), cli):
        status, out = post_file(server, path)
        assert status == 200, out
        assert_same_prediction(out, expected)
        assert out["model"] == "lstm_genre" and out["emotion_model"] == "emotion"
        assert out["duration_s"] == pytest.approx(sf.info(str(path)).duration, abs=1e-3)
    # The long song: two windows (30 s and the 15 s rest), each with its own
    # probabilities, and the song's are their mean.
    status, out = post_file(server, clips["long"], top_k="all")
    assert out["windows"] == 2 and [w["start_s"] for w in out["per_window"]] == [0.0, 30.0]
    for g in out["genres"]:
        assert g["probability"] == pytest.approx(np.mean([w["genres"][g["label"]] for w in out["per_window"]]),
                                                 abs=2e-4)
    assert len(out["genres"]) == 10 and sum(g["probability"] for g in out["genres"]) == pytest.approx(1, abs=1e-3)


def test_model_choice_and_spectrogram(server, clips):
    _, lstm = post_file(server, clips["short"], top_k="all")
    status, cnn = post_file(server, clips["short"], model="cnn3_genre", top_k="all", spectrogram="1")
    assert status == 200 and cnn["model"] == "cnn3_genre"
    p = lambda r: np.array([g["probability"] for g in sorted(r["genres"], key=lambda g: g["label"])])
    assert np.abs(p(lstm) - p(cnn)).max() > 1e-3  # a different network answered
    s = cnn["spectrogram"]
    from jaxmusic import features

    pixels = pixels_of(s)
    y, _ = features.load_audio(clips["short"])
    full, _, _ = features.extract(y)
    expected = np.round((np.clip(full[:, :128], -80, 0) + 80) / 80 * 255)  # 8 s < 800 frames: no pooling
    assert pixels.shape == expected.shape
    assert np.abs(pixels.astype(float) - expected).max() <= 1
    assert s["seconds_per_frame"] == 512 / 22050 and s["range"] == [-80, 0]


def bad_inputs(tmp: Path) -> list[tuple[str, dict, int, str]]:
    """(case, post_file arguments, status, text the message must contain)."""
    two_hours = tmp / "two hours.flac"
    with sf.SoundFile(str(two_hours), "w", samplerate=8000, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(12):
            f.write(block)
    wav = af.write_audio(tmp / "whole.wav", af.song(5, 4.0)).read_bytes()
    flac = af.write_audio(tmp / "whole.flac", af.song(5, 4.0)).read_bytes()
    return [
        ("not audio", dict(path=af.write_corrupt(tmp / "broken.wav")), 415, "broken.wav: not an audio file"),
        ("text", dict(name="notes.txt", data=b"just some text\n" * 20), 415, "notes.txt: not an audio file"),
        ("m4a", dict(name="song.m4a", data=b"\0\0\0\x18ftypM4A " + bytes(200)), 415, "song.m4a: .m4a files"),
        ("empty file", dict(name="empty.wav", data=b""), 400, "empty.wav: empty file"),
        ("no samples", dict(path=af.write_empty_wav(tmp / "nosamples.wav")), 400, "nosamples.wav: no audio samples"),
        ("silent", dict(path=af.write_audio(tmp / "quiet.wav", af.silence(3.0))), 422, "quiet.wav: the audio is silent"),
        ("truncated wav", dict(name="cut.wav", data=wav[: len(wav) // 2]), 422, "cut.wav: truncated file"),
        ("truncated flac", dict(name="cut.flac", data=flac[: len(flac) // 2]), 422, "cut.flac: truncated or corrupt"),
        ("all NaN", dict(path=af.write_audio(tmp / "nan.wav", np.full(22050 * 5, np.nan, np.float32), 22050, "FLOAT")),
         422, "nan.wav: the audio has 110250 non-finite (NaN/inf) samples, first at 0.000 s"),
        ("huge rate", dict(path=huge_rate_flac(tmp / "dense.flac", seconds=2)), 413,
         "dense.flac: 8 channel(s) at 655350 Hz is 5,242,800 samples per second of audio, over the 384,000"),
        ("too large", dict(name="big.wav", data=os.urandom(MAX_MB * 2**20 + 100_000)), 413,
         f"big.wav: upload of {MAX_MB + 0.1:.1f} MB is over the {MAX_MB} MB limit"),
        ("two hours", dict(path=two_hours), 413, "two hours.flac: 120.0 min of audio is over the 5.0 min limit"),
        ("no file", dict(model="lstm_genre"), 400, "no file in the request"),
        ("unknown model", dict(path=af.write_audio(tmp / "ok.wav", af.song(6, 2.0)), model="nope"), 404,
         "no model 'nope'"),
        ("bad top_k", dict(path=tmp / "ok.wav", top_k="many"), 400, "top_k must be"),
    ]


def test_bad_input_is_refused_clearly_and_the_server_keeps_serving(server, clips, tmp_path):
    for case, kwargs, status, text in bad_inputs(tmp_path):
        got, out = post_file(server, **kwargs)
        assert (got, case) == (status, case), out
        assert text in out["error"], (case, out)
        assert "\n" not in out["error"] and "Traceback" not in out["error"]
        assert request(f"{server.url}/api/models")[0] == 200, case
    # Not multipart at all, and a GET on the POST route.
    got, out = request(f"{server.url}/api/predict", b'{"file": "x"}', "application/json")
    assert got == 400 and "multipart/form-data" in out["error"]
    assert urllib.request.urlopen(f"{server.url}/", timeout=30).status == 200
    status, out = post_file(server, clips["short"])
    assert status == 200 and out["genres"]
    assert server.proc.poll() is None


def test_a_dense_upload_is_refused_within_a_memory_bound(server, clips, tmp_path):
    """The issue's 170 KB FLAC (30 s, 655,350 Hz, 8 channels) is refused from its header:
    the server's peak RSS rises by less than 64 MB (a whole-file read takes 629 MB for the
    float32 block alone), and the server keeps answering."""
    path = huge_rate_flac(tmp_path / "dense.flac")
    assert path.stat().st_size < 400_000
    grew, (status, out) = peak_rss_growth_mb(server.proc.pid, lambda: post_file(server, path))
    assert status == 413 and "655350 Hz" in out["error"], out
    assert grew < 64, f"peak RSS grew {grew:.0f} MB"
    assert post_file(server, clips["short"])[0] == 200


def test_a_streamed_wav_header_is_not_truncation(server, tmp_path):
    """SoX writing to a pipe declares 0x7FFFF000 data bytes; libsndfile reads the file whole,
    and so does the server: the answer is the same audio's with an exact header."""
    y = af.song(7, 5.0)
    exact = af.write_audio(tmp_path / "exact.wav", y, 22050, "PCM_16")
    streamed = streamed_wav(tmp_path / "piped.wav", y)
    assert sf.info(str(streamed)).frames == len(y)
    status, out = post_file(server, streamed, top_k="all")
    assert status == 200, out
    _, ref = post_file(server, exact, top_k="all")
    assert out["duration_s"] == 5.0 and out["genres"] == ref["genres"] and out["emotion"] == ref["emotion"]


def test_musicnn_run_answer_and_picture_are_the_command_lines(musicnn_server, tmp_path):
    """A run on the musicnn view: the API answers `jaxmusic predict --json` (the audio read at
    16 kHz from its own 44.1 kHz, not via 22.05 kHz), and the picture is the musicnn recipe's
    96 bands at 256/16000 s per frame."""
    import librosa

    from jaxmusic import features

    path = af.write_audio(tmp_path / "tune.wav", np.concatenate([af.song(11, 4.0, 44100),
                                                                  af.click_track(130, 4.0, 44100)]), 44100)
    [cli] = cli_predict([path], musicnn_server.run_dir)
    status, out = post_file(musicnn_server, path, spectrogram="1")
    assert status == 200, out
    assert_same_prediction(out, cli)
    s = out["spectrogram"]
    y = librosa.load(path, sr=16000)[0]
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96)
    full = np.log10(1 + 10000 * mel).T
    expected = np.round(np.clip(full / full.max(), 0, 1) * 255)  # 501 frames < 800: no pooling
    assert (s["frames"], s["bins"]) == expected.shape == (501, 96)
    assert s["seconds_per_frame"] == 256 / 16000 and s["range"][0] == 0
    assert s["range"][1] == pytest.approx(full.max(), rel=1e-5)
    assert np.abs(pixels_of(s).astype(float) - expected).max() <= 1
    assert features.load_audio(path, sr=16000)[0].shape == y.shape


def test_queue_bound_and_abandoned_upload(musicnn_server, tmp_path):
    """With --max-queue 1, a request whose upload is under way fills the queue: the next one
    is answered 503 with Retry-After; when the first client goes away mid-body the server
    logs it (no 500, no traceback), frees its place and answers again."""
    path = af.write_audio(tmp_path / "ok.wav", af.song(3, 2.0))
    host, port = musicnn_server.url.split("//")[1].split(":")
    stalled = socket.create_connection((host, int(port)), timeout=30)
    body, kind = multipart_body({}, {"file": ("stalled.wav", path.read_bytes())})
    stalled.sendall(f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    stats = lambda: request(f"{musicnn_server.url}/api/stats")[1]["queue"]
    assert wait_for(lambda: stats()["admitted"] == 1, "the stalled upload to be admitted")
    assert stats()["max_queue"] == 1
    data, kind = multipart_body({}, {"file": ("ok.wav", path.read_bytes())})
    req = urllib.request.Request(f"{musicnn_server.url}/api/predict", data=data, headers={"Content-Type": kind})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
    assert "busy" in json.loads(refused.value.read())["error"]
    stalled.close()
    assert wait_for(lambda: stats()["admitted"] == 0, "the abandoned upload to be dropped")
    line = wait_for(lambda: next((x for x in musicnn_server.lines if "client disconnected" in x), None),
                    "the disconnect to be logged")
    assert "stalled.wav: client disconnected after" in line and line.startswith("WARNING")
    assert not [x for x in musicnn_server.lines if "Traceback" in x or "prediction failed" in x]
    assert post_file(musicnn_server, path)[0] == 200


def test_concurrent_requests_are_batched_and_answered_correctly(server, tmp_path):
    """50 requests at once (5 distinct clips), bounded in time: every answer is the
    clip's own sequential answer, and the batcher put several requests in one call."""
    paths = [af.write_audio(tmp_path / f"c{i}.wav", af.song(20 + i, 1.5)) for i in range(5)]
    sequential = {p.name: post_file(server, p, top_k="all")[1] for p in paths}
    before = request(f"{server.url}/api/stats")[1]["batchers"]
    with cf.ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(post_file, server, paths[i % 5], top_k="all") for i in range(50)]
        done, pending = cf.wait(futures, timeout=240)
    assert not pending, f"{len(pending)} of 50 requests unanswered after 240 s"
    for f in futures:
        status, out = f.result()
        assert status == 200, out
        ref = sequential[out["file"]]
        assert [g["label"] for g in out["genres"]] == [g["label"] for g in ref["genres"]]
        np.testing.assert_allclose([g["probability"] for g in out["genres"]],
                                   [g["probability"] for g in ref["genres"]], atol=1.5e-4)
    stats = request(f"{server.url}/api/stats")[1]["batchers"]
    genre = stats["lstm_genre"]
    assert genre["requests"] - before["lstm_genre"]["requests"] == 50
    assert genre["max_requests_per_call"] > 1  # requests shared model calls
    assert genre["calls"] - before["lstm_genre"]["calls"] < 50


def test_models_compiled_once_at_start(server, clips):
    post_file(server, clips["short"], model="cnn3_genre")
    stats = request(f"{server.url}/api/stats")[1]["batchers"]
    assert sorted(stats) == ["cnn3_genre", "emotion", "lstm_genre"]
    for name, s in stats.items():
        assert s["compiled_programs"] == len(s["bucket_sizes"]), (name, s)


def test_binds_loopback_by_default():
    from jaxmusic.cli import serve as cli_serve
    import argparse

    parser = argparse.ArgumentParser()
    cli_serve.add_arguments(parser, "serve")
    args = parser.parse_args(["--workdir", "r"])
    assert (args.host, args.port, args.max_mb, args.max_minutes) == ("127.0.0.1", 8000, 50.0, 20.0)


# ----------------------------------------------------------------------------- the page


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is missing: apt-get install -y chromium "
                                             "(`make test` installs it)")
def test_page_in_headless_chromium(server, clips, tmp_path):
    from tests.cdp import Browser

    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        browser.open(f"{server.url}/")
        assert browser.wait_for("document.querySelectorAll('#model option').length", 60) == 2
        browser.set_file("#file", clips["long"])
        top = browser.wait_for("document.getElementById('result').dataset.ready === '1' && "
                               "document.getElementById('top-genre').textContent", 120)
        bars = browser.evaluate("[...document.querySelectorAll('#genre-chart rect.bar')]"
                                ".map(r => [r.dataset.label, Number(r.dataset.value)])")
        emotion = browser.evaluate("[...document.querySelectorAll('#emotion-chart rect.bar')].length")
        lines = browser.evaluate("document.querySelectorAll('#timeline polyline').length")
        painted = browser.evaluate(
            "(() => { const c = document.getElementById('spectrogram'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let s = new Set();"
            " for (let i = 0; i < d.length; i += 4 * 97) s.add(d[i] * 65536 + d[i+1] * 256 + d[i+2]);"
            " return [c.width, c.height, s.size]; })()")
        shot = tmp_path / "page.png"
        browser.screenshot(shot)
        errors = browser.page_errors()
        # A bad file: the message is on the page (and the browser logs the 415).
        browser.set_file("#file", af.write_corrupt(tmp_path / "broken.wav"))
        error = browser.wait_for("!document.getElementById('error').hidden && "
                                 "document.getElementById('error').textContent", 60)
        refused = browser.page_errors()[len(errors):]
    finally:
        browser.close()
    status, api = post_file(server, clips["long"], top_k="all", spectrogram="1")
    assert top == api["genres"][0]["label"]
    assert [b[0] for b in bars] == [g["label"] for g in api["genres"]]
    np.testing.assert_allclose([b[1] for b in bars], [g["probability"] for g in api["genres"]], atol=1.5e-4)
    assert emotion == 3 and lines == 5
    assert painted[:2] == [api["spectrogram"]["frames"], 128] and painted[2] > 20
    assert error.startswith("broken.wav: not an audio file")
    assert errors == [], errors
    assert len(refused) == 1 and "status of 415" in refused[0], refused  # no script error
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]
    assert img.std() > 0.05 and len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100
    if os.environ.get("JAXMUSIC_SCREENSHOT"):  # refresh docs/serve.png: JAXMUSIC_SCREENSHOT=docs/serve.png
        shutil.copy(shot, REPO / os.environ["JAXMUSIC_SCREENSHOT"])
