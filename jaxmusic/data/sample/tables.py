"""Precomputed spectra of the lab's recipe: what a tone, a drum or hiss looks like in
its mel filter bank and chromagram.

Every clip is rendered from these: the mel response of a Hann-windowed sinusoid on a
fine pitch grid (1/8 semitone), its ``chroma_cqt``-like pitch-class response, broadband
drum, hiss and distortion profiles, the frequency-independent texture width per band
and the STFT window's smear over neighbouring frames.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxmusic import recipe
from jaxmusic.data import lab

SR = recipe.SAMPLE_RATE
N_FFT = recipe.N_FFT
HOP = recipe.HOP_LENGTH
GRID_MIDI0 = 12.0      # fine pitch grid: MIDI 12 .. 127 in 1/8 semitones
GRID_STEP = 8


@functools.lru_cache(maxsize=1)
def tables() -> dict:
    """The tables, computed once per process (~0.1 s)."""
    import librosa

    fb = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=lab.N_MEL).astype(np.float64)
    fft_f = np.linspace(0.0, SR / 2, 1 + N_FFT // 2)
    mel_fc = librosa.mel_frequencies(lab.N_MEL + 2, fmin=0.0, fmax=SR / 2)[1:-1]
    midi = GRID_MIDI0 + np.arange((127 - GRID_MIDI0) * GRID_STEP + 1) / GRID_STEP
    f = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    # Power spectrum of a Hann-windowed sinusoid: main lobe +-2 bins, first side lobes.
    d = (fft_f[None, :] - f[:, None]) / (SR / N_FFT)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sinc(d) / (1.0 - d * d)
    w = np.where(np.isclose(np.abs(d), 1.0), 0.5, w)
    w = np.where(np.abs(d) < 4.0, w, 0.0)
    tone_mel = (w * w) @ fb.T                                  # (grid, 128)
    tone_mel[f >= SR / 2] = 0.0
    # Pitch-class response of chroma_cqt (C1..C8), slightly smeared across classes.
    pc = np.arange(12)
    dist = (midi[:, None] - pc[None, :]) % 12.0
    dist = np.minimum(dist, 12.0 - dist)
    tone_chroma = np.exp(-0.5 * (dist / 0.35) ** 2)
    tone_chroma[(midi < 24) | (midi > 108)] = 0.0
    lf = np.log2(np.maximum(fft_f, 1.0))

    def band(spec):
        v = fb @ spec
        return v / v.sum()

    drums = {
        "kick": band(np.exp(-0.5 * ((lf - np.log2(58)) / 0.45) ** 2) + 0.01 * np.exp(-fft_f / 2500)),
        "snare": band(0.5 * np.exp(-0.5 * ((lf - np.log2(190)) / 0.35) ** 2)
                      + 0.05 * np.exp(-0.5 * ((lf - np.log2(3200)) / 1.0) ** 2)),
        "hat": band(0.01 / (1.0 + (6500.0 / np.maximum(fft_f, 1.0)) ** 6)),
    }
    hiss = band(np.maximum(fft_f, 50.0) ** -0.3)
    buzz = band(np.exp(-0.5 * ((lf - np.log2(1500)) / 1.6) ** 2))
    b = np.arange(lab.N_MEL)
    blur = np.exp(-0.5 * ((b[:, None] - b[None, :]) / 3.0) ** 2)
    blur /= blur.sum(0, keepdims=True)
    k_eff = fb.sum(1) ** 2 / (fb ** 2).sum(1)
    # Energy a frame sees from an event at offsets -2..2 hops (squared Hann window).
    n = np.arange(-N_FFT // 2, N_FFT // 2) + 0.5
    w2 = (0.5 * (1 + np.cos(np.pi * n / (N_FFT // 2)))) ** 2
    smear = np.array([w2[np.abs(n - k * HOP) <= HOP / 2].sum() for k in range(-2, 3)])
    smear /= smear.sum()
    return dict(tone_mel=tone_mel, tone_chroma=tone_chroma, grid_midi=midi, grid_f=f,
                mel_fc=mel_fc, drums=drums, hiss=hiss, buzz=buzz,
                noise_sigma=np.sqrt(np.log1p(1.0 / k_eff)), smear=smear, blur=blur)


# --- the score of one clip -------------------------------------------------------------
