"""The JAX frontend against librosa on the same audio."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/ helpers, any import mode
import audio_fixtures as af  # noqa: E402
from jaxmusic import frontend as fe

SR = af.SR
HOP = 512
BLOCKS = fe.FrontendConfig(stft="blocks")
XLA = fe.FrontendConfig(stft="xla")
# mel dB vs librosa (float32 frontend; librosa runs its FFT in float64). Errors grow
# as bands approach the -80 dB floor: see benchmarks/frontend_results.md.
DB_TOL_60 = 2e-4       # dB, bands within 60 dB of the clip's maximum
DB_TOL_ALL = 5e-3      # dB, every band down to the top_db floor
CHROMA_TOL = 1e-4      # vs librosa.feature.chroma_stft(tuning=0)


@pytest.fixture(scope="module")
def batch():
    """Three clips of different lengths, zero padded to one array."""
    clips = [af.chord("C", 3.0), af.noise(2.0, seed=1), af.click_track(120, 2.5, seed=2)]
    n = max(len(c) for c in clips)
    audio = np.zeros((len(clips), n), np.float32)
    for i, c in enumerate(clips):
        audio[i, :len(c)] = c
    lengths = np.array([len(c) for c in clips], np.int32)
    return clips, audio, lengths


@pytest.fixture(scope="module")
def outputs(batch):
    _, audio, lengths = batch
    out = {}
    for name, cfg in (("blocks", BLOCKS), ("xla", XLA)):
        feats, flen = fe.frontend_jit(jnp.asarray(audio), jnp.asarray(lengths), config=cfg)
        out[name] = (np.asarray(feats), np.asarray(flen))
    return out


def librosa_mel_db(y):
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=HOP, n_mels=128,
                                       power=2.0)
    return librosa.power_to_db(S, ref=np.max).T


def test_stft_power_matches_librosa(batch):
    clips, _, _ = batch
    y = clips[0]
    ours = np.asarray(fe.stft_power(jnp.asarray(y[None]), XLA))[0]
    ref = (np.abs(librosa.stft(y, n_fft=2048, hop_length=HOP)) ** 2).T
    assert ours.shape == ref.shape == (1 + len(y) // HOP, 1025)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * ref.max())


@pytest.mark.parametrize("impl", ["blocks", "xla"])
def test_mel_and_chroma_match_librosa(batch, outputs, impl):
    clips, _, _ = batch
    feats, flen = outputs[impl]
    for i, y in enumerate(clips):
        mel = librosa_mel_db(y)
        chroma = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP, tuning=0.0).T
        n = mel.shape[0]
        assert flen[i] == n == 1 + len(y) // HOP
        err = np.abs(feats[i, :n, :128] - mel)
        assert err[mel > -60].max() < DB_TOL_60
        assert err.max() < DB_TOL_ALL
        assert np.abs(feats[i, :n, 128:] - chroma).max() < CHROMA_TOL
        # Frames past the clip are zero (the lab loader's padding).
        assert not feats[i, n:].any()


def test_chroma_peaks_at_chord_pitch_classes(outputs):
    feats, flen = outputs["blocks"]
    chroma = feats[0, :flen[0], 128:].mean(axis=0)
    top3 = set(np.argsort(chroma)[-3:].tolist())
    assert top3 == af.chord_pitch_classes("C") == {0, 4, 7}   # C, E, G


def test_chroma_correlates_with_chroma_cqt(batch, outputs):
    clips, _, _ = batch
    feats, flen = outputs["blocks"]
    ours = feats[0, :flen[0], 128:]
    cqt = librosa.feature.chroma_cqt(y=clips[0], sr=SR, hop_length=HOP).T
    r = np.corrcoef(ours.ravel(), cqt.ravel())[0, 1]
    assert r > 0.85, r


def test_jit_vmap_per_clip_equals_batch(batch, outputs):
    """Each clip computed alone (vmap of a one-clip function) = the batched call."""
    _, audio, lengths = batch
    feats, flen = outputs["blocks"]

    def one(a, length):
        f, fl = fe.frontend(a[None], length[None], BLOCKS)
        return f[0], fl[0]

    vm_feats, vm_len = jax.jit(jax.vmap(one))(jnp.asarray(audio), jnp.asarray(lengths))
    np.testing.assert_array_equal(np.asarray(vm_len), flen)
    np.testing.assert_allclose(np.asarray(vm_feats), feats, rtol=0, atol=1e-4)


def test_data_parallel_equals_frontend(batch, outputs):
    _, audio, lengths = batch
    feats, flen = fe.data_parallel(XLA)(jnp.asarray(audio), jnp.asarray(lengths))
    np.testing.assert_array_equal(np.asarray(flen), outputs["xla"][1])
    np.testing.assert_allclose(np.asarray(feats), outputs["xla"][0], rtol=0, atol=1e-4)


def test_silence_gives_floor_not_nan():
    feats, _ = fe.frontend_jit(jnp.zeros((1, 4 * HOP), jnp.float32), config=XLA)
    ref = librosa_mel_db(np.zeros(4 * HOP, np.float32))
    feats = np.asarray(feats)[0]
    assert np.isfinite(feats).all()
    np.testing.assert_array_equal(feats[:, :128], ref)
    assert not feats[:, 128:].any()      # chroma of silence stays 0, as librosa's


def test_beat_sync_matches_librosa_sync():
    rng = np.random.default_rng(0)
    t, f = 50, 140
    feats = rng.standard_normal((2, t, f)).astype(np.float32)
    feats[:, :, 5] = 1.0                          # ties
    lengths = np.array([50, 37], np.int32)
    beats = [np.array([3, 10, 10, 11, 24, 40, 49, 60]),  # duplicates, odd/even sizes, past the end
             np.array([0, 7, 36, 37])]                  # a beat at 0 and at the end
    bf, nb = fe.pad_beats(beats, max_beats=10)
    pooled, nseg = fe.beat_sync_jit(jnp.asarray(feats), jnp.asarray(lengths), jnp.asarray(bf),
                                    jnp.asarray(nb))
    pooled, nseg = np.asarray(pooled), np.asarray(nseg)
    assert pooled.shape == (2, 11, f)
    for i in range(2):
        ref = librosa.util.sync(feats[i, :lengths[i]].T, beats[i], aggregate=np.median).T
        assert nseg[i] == ref.shape[0]
        np.testing.assert_array_equal(pooled[i, :nseg[i]], ref)
        assert not pooled[i, nseg[i]:].any()


def test_beat_sync_of_frontend_output_matches_librosa(outputs):
    feats, flen = outputs["blocks"]
    beats = [np.arange(10, 120, 21), np.arange(5, 80, 19), np.array([], int)]
    bf, nb = fe.pad_beats(beats, max_beats=8)
    pooled, nseg = fe.beat_sync_jit(jnp.asarray(feats), jnp.asarray(flen), jnp.asarray(bf),
                                    jnp.asarray(nb))
    for i in range(3):
        ref = librosa.util.sync(feats[i, :flen[i]].T, beats[i], aggregate=np.median).T
        np.testing.assert_array_equal(np.asarray(pooled)[i, :int(nseg[i])], ref)


def test_flax_module_views(batch, outputs):
    _, audio, lengths = batch
    feats, _ = outputs["xla"]
    model = fe.Frontend(config=XLA, view="mel")
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(audio), jnp.asarray(lengths))
    assert not jax.tree_util.tree_leaves(variables)          # no parameters
    mel, flen = jax.jit(model.apply)(variables, jnp.asarray(audio), jnp.asarray(lengths))
    np.testing.assert_allclose(np.asarray(mel), feats[..., :128], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="view"):
        fe.Frontend(config=XLA, view="tempo").apply({}, jnp.asarray(audio[:1]))


def test_blocks_config_is_checked():
    with pytest.raises(ValueError, match="n_fft == 4"):
        fe.FrontendConfig(n_fft=2048, hop_length=256, stft="blocks").resolved_stft()
    assert fe.FrontendConfig(n_fft=2048, hop_length=256).resolved_stft() == "xla"
