"""Rendering a score to the lab's features: the (T, 140) mel dB over chroma array of
the full-resolution clip, and its beat-synchronised variant.

Every source is a fixed spectral profile from :mod:`.tables` (mel power per band)
times an envelope over frames, so the spectrogram is one product of profiles and
envelopes for the steady tones and one for the noise-like sources (drums,
distortion, hiss); then texture, the STFT window's smear, ``power_to_db(ref=max)``.
The chromagram follows the same notes. Rendering draws from the clip's second
random stream (``clip_rng(seed, group, index, RENDER)``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from jaxmusic import recipe, workers
from jaxmusic.data import lab
from jaxmusic.data.sample.genres import GENRES
from jaxmusic.data.sample.planning import RENDER, clip_rng
from jaxmusic.data.sample.score import Layer, Score, compose
from jaxmusic.data.sample.tables import GRID_MIDI0, GRID_STEP, SR, tables

TOP_DB = recipe.TOP_DB


def _note_profiles(notes: Sequence[tuple], timbre: dict, bright: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mel power (128, n) and chroma power (12, n) of each unit (a set of MIDI notes).

    Partial h of a note has power h^-rolloff (odd h only for square waves), times the
    formant bumps, times a -18 dB/octave roll-off above ``bright`` Hz; 10% of the
    power is spread over neighbouring bands (vibrato, reverb, room)."""
    tb = tables()
    H = 16
    h = np.arange(1, H + 1)
    amp = h ** -timbre["rolloff"]
    if timbre["odd"]:
        amp = amp * (h % 2 == 1)
    mel = np.zeros((lab.N_MEL, len(notes)))
    chroma = np.zeros((12, len(notes)))
    flat = [(i, m) for i, unit in enumerate(notes) for m in unit]
    if not flat:
        return mel, chroma
    owner = np.array([i for i, _ in flat])
    midi = np.array([m for _, m in flat], float)
    pm = midi[:, None] + 12.0 * np.log2(h)[None, :]                 # (notes, H)
    f = 440.0 * 2.0 ** ((pm - 69.0) / 12.0)
    gdb = np.zeros_like(f)
    lf = np.log2(f)
    for fc, g, w in timbre["formants"]:
        gdb += g * np.exp(-0.5 * ((lf - math.log2(fc)) / w) ** 2)
    gdb -= 18.0 * np.maximum(0.0, lf - math.log2(bright))
    a = amp[None, :] * 10.0 ** (gdb / 10.0) * (f < SR / 2)
    idx = np.clip(np.round((pm - GRID_MIDI0) * GRID_STEP).astype(int), 0, len(tb["grid_midi"]) - 1)
    m_per_note = np.einsum("nh,nhk->nk", a, tb["tone_mel"][idx])      # (notes, 128)
    c_per_note = np.einsum("nh,nhk->nk", a, tb["tone_chroma"][idx])   # (notes, 12)
    np.add.at(mel.T, owner, m_per_note)
    np.add.at(chroma.T, owner, c_per_note)
    return 0.9 * mel + 0.1 * (tb["blur"] @ mel), chroma


def _layer_env(layer: Layer, T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit index, sustained (body) and decaying (attack) power envelopes per frame."""
    t = np.arange(T)
    if len(layer.times) == 0:
        return np.zeros(T, int), np.zeros(T), np.zeros(T)
    j = np.searchsorted(layer.times, t, side="right") - 1
    valid = j >= 0
    j = np.maximum(j, 0)
    dt = np.maximum(t - layer.times[j], 0.0)
    v = np.where(valid, layer.vel[j], 0.0)
    return layer.units[j], v * layer.sustain, v * (1.0 - layer.sustain) * np.exp(-dt / layer.decay)


def _impulses(times: np.ndarray, vel: np.ndarray, T: int) -> np.ndarray:
    x = np.zeros(T + 2)
    ok = (times >= 0) & (times < T)
    i = np.floor(times[ok]).astype(int)
    f = times[ok] - i
    np.add.at(x, i, vel[ok] * (1 - f))
    np.add.at(x, i + 1, vel[ok] * f)
    return x[:T]


def render(score: Score, seed: int, group: str, index: int) -> np.ndarray:
    """The (T, 140) float32 fused features (mel dB over chroma) of a composed clip."""
    import librosa

    tb = tables()
    f4 = np.float32
    rng = clip_rng(seed, group, index, RENDER)
    p, T = score.params, score.T
    tones = _tone_sources(score)
    perc_env, nprof, nrows, scale = _drum_sources(score, tones.mean_power, rng)
    gain = 10.0 ** ((p["loud"] + score.gain_db) / 10.0)
    # noise-like: drums, distortion buzz following the chords, hiss at an absolute level
    dist_env = tones.harm_env * 10.0 ** (p["dist"] / 10.0) * tones.mean_power
    Pn = np.stack(nprof + [tb["buzz"], tb["hiss"]], axis=1)
    Wn = np.stack([r * scale * gain for r in nrows]
                  + [dist_env * gain, np.full(T, 10.0 ** (p["noise"] / 10.0))])
    with workers.one_blas_thread():      # tiny products: threads only cost, esp. on a busy box
        tone = tones.mel.astype(f4) @ (tones.mel_env * gain).astype(f4)
        noisy = Pn.astype(f4) @ Wn.astype(f4)
        chroma = tones.chroma.astype(f4) @ tones.chroma_env.astype(f4)
    # texture: tones are steady; noise-like parts fluctuate like chi-square power averaged
    # over the FFT bins of each band (log-normal, variance 1/k_eff), correlated over
    # neighbouring frames like overlapping windows
    z = rng.standard_normal((lab.N_MEL, T + 2), dtype=f4)
    z = (f4(0.5) * z[:, :-2] + z[:, 1:-1] + f4(0.5) * z[:, 2:]) * f4(1.0 / math.sqrt(1.5))
    sig = tb["noise_sigma"][:, None].astype(f4)
    S = tone + noisy * np.exp(sig * z - sig * sig / 2)
    S *= (10.0 ** (score.eq_db / 10.0)).astype(f4)[:, None]
    S = _smear(S, tb["smear"].astype(f4))
    mel_db = librosa.power_to_db(S, ref=np.max, top_db=TOP_DB)
    # chroma: harmonic pitch classes + broadband floor, sharpness, per-frame max-normalised
    broad = perc_env + dist_env + 10.0 ** ((p["noise"] - p["loud"] - score.gain_db) / 10.0)
    chroma *= f4(tones.mean_power / (float(chroma.sum(0, dtype=np.float64).mean()) + 1e-12))
    zc = rng.standard_normal((2, 12, T), dtype=f4)
    cpow = chroma + (broad * (0.5 / 12)).astype(f4)[None, :] * np.exp(f4(0.6) * zc[0])
    cpow = cpow * np.exp(f4(0.25) * zc[1]) + f4(1e-9)
    cpow = _smear(cpow, tb["smear"].astype(f4))
    c = cpow ** f4(p["sharp"] / 2)
    c = c / c.max(axis=0, keepdims=True)
    out = np.concatenate([mel_db, c], axis=0).astype(np.float32)      # (140, T)
    return np.ascontiguousarray(out.T)


@dataclasses.dataclass
class _Tones:
    mel: np.ndarray          # (128, units): mel power profile of every body and attack unit
    mel_env: np.ndarray      # (units, T): their envelopes
    chroma: np.ndarray       # (12, n): pitch-class profile of every unit
    chroma_env: np.ndarray   # (n, T)
    harm_env: np.ndarray     # (T,) the chord instrument's envelope (distortion follows it)
    mean_power: float        # mean harmonic power per frame


def _tone_sources(score: Score) -> _Tones:
    """Body and (brighter) attack profile of every unit of every layer, with envelopes."""
    T = score.T
    ar = np.arange(T)
    prof, cprof, rows, crows = [], [], [], []
    harm_env = np.zeros(T)
    for name, layer in score.layers.items():
        if not layer.notes:
            continue
        bright = layer.timbre["bright"]
        pm, pc = _note_profiles(layer.notes, layer.timbre, bright)
        pa, _ = _note_profiles(layer.notes, layer.timbre, 2.5 * bright)     # brighter attack
        units, body, attack = _layer_env(layer, T)
        lvl = 10.0 ** (layer.level_db / 10.0)
        nm = pm.sum(0).mean() + 1e-12
        n = len(layer.notes)
        for P, env in ((pm, body), (pa, attack)):
            w = np.zeros((n, T))
            w[units, ar] = lvl * env / nm
            prof.append(P)
            rows.append(w)
        w = np.zeros((n, T))
        w[units, ar] = lvl * (body + attack) / (pc.sum(0).mean() + 1e-12)
        cprof.append(pc)
        crows.append(w)
        if name == "chords":
            harm_env = body + attack
    P = np.concatenate(prof, axis=1)
    W = np.concatenate(rows, axis=0)
    M = float((P.sum(0) @ W).mean())
    return _Tones(P, W, np.concatenate(cprof, axis=1), np.concatenate(crows, 0), harm_env, M)


def _drum_sources(score: Score, mean_power: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, list, list, float]:
    """Drum impulses decaying over a few frames: (total envelope scaled to the clip's
    drum level, profiles, unscaled envelopes, their scale)."""
    tb = tables()
    T = score.T
    G = GENRES[score.genre]
    decay = G["decay"] * math.exp(rng.normal(0, 0.2))
    kern = np.exp(-np.arange(int(6 * decay) + 1) / decay)
    lv = {"kick": G["kick"], "snare": G["snare"], "hat": G["hat"]}
    nprof, nrows = [], []
    perc_env = np.zeros(T)
    for name, (times, vel) in score.drums.items():
        if len(times):
            k = kern if name != "hat" else kern[: max(2, len(kern) // 2)]
            env = np.convolve(_impulses(times, vel ** 2, T), k)[:T] * 10.0 ** (lv[name] / 10.0)
            nprof.append(tb["drums"][name])
            nrows.append(env)
            perc_env += env
    ptot = float(perc_env.mean())            # drum profiles each sum to 1 over the bands
    scale = 10.0 ** (score.params["perc"] / 10.0) * mean_power / ptot if ptot > 0 else 0.0
    perc_env *= scale
    return perc_env, nprof, nrows, scale


def _smear(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Convolve along time with the 5-tap window kernel (edges replicated)."""
    xp = np.concatenate([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], axis=1)
    T = x.shape[1]
    return sum(k[i] * xp[:, i:i + T] for i in range(5))


def warm_up() -> None:
    """Build the tables and load librosa's lazily imported parts (once per process)."""
    import librosa

    tables()
    librosa.power_to_db(np.ones((2, 3), np.float32), ref=np.max)
    librosa.util.sync(np.ones((2, 8), np.float32), [2, 5], aggregate=np.median)


def beat_sync(full_tf: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """Beat-synchronised (T_beat, 140) features, as the lab made them:
    ``librosa.util.sync`` with ``np.median`` on the (140, T) float32 array."""
    import librosa

    arr = np.ascontiguousarray(np.asarray(full_tf, np.float32).T)
    out = librosa.util.sync(arr, [int(b) for b in beat_frames], aggregate=np.median)
    return np.ascontiguousarray(out.T)


@dataclasses.dataclass
class Clip:
    score: Score
    full: np.ndarray     # (T, 140) float32
    beat: np.ndarray     # (T_beat, 140) float32

    @property
    def beats(self) -> np.ndarray:
        return self.score.beat_frames


def synthesize(seed: int, group: str, index: int, genre: str) -> Clip:
    """One clip, in memory: its score, full-resolution and beat-synchronised features."""
    score = compose(seed, group, index, genre)
    full = render(score, seed, group, index)
    return Clip(score, full, beat_sync(full, score.beat_frames))
