"""The embedded sample dataset: a deterministic, synthetic stand-in for the lab data.

``jaxmusic sample-data OUT [--size tiny|small|full] [--seed N]`` writes the four
sets of the course lab (``fma_genre_spectrograms``, ``fma_genre_spectrograms_beat``,
``multitask_dataset``, ``multitask_dataset_beat``) in exactly the lab's layout
(see :mod:`jaxmusic.data.lab` and ``docs/sample_data.md``), so every reader,
demo and test runs unchanged on it and on the real data.

Generative model (documented in full in ``docs/sample_data.md``)
----------------------------------------------------------------
Nothing is synthesised as audio: each clip is built directly in the
spectrogram domain, in the units the real features have.

1. *Genre model* (:data:`GENRES`): one row per genre string with a tempo
   distribution, drum pattern family (on-beat, four-on-the-floor, syncopated,
   swung, none), swing, syncopation, timing looseness, chord progression style,
   chord-change rate, comping / arpeggio pattern, major-mode probability,
   instrument timbre (partial roll-off, odd-only partials, formant bumps),
   recording chain (spectral tilt, low-pass cut-off, hiss level), distortion,
   dynamics and loudness. Strings that the lab merges (Rock, Psych-Rock,
   Post-Rock; Metal, Punk; Folk, Psych-Folk; Electronic, Chiptune) are close
   but not identical.
2. *Per clip* (:func:`compose`, seeded by ``[seed, group, index]``): every genre
   parameter is drawn around the genre's value, plus a key, a mode, a tempo,
   a loudness and a random "production" EQ curve. From these a score is laid
   out on a beat grid with tempo drift: drum hits (kick/snare/hat, with swing,
   syncopation and timing jitter), chord articulations, a bass line and a
   melody. A beat tracker model (octave errors, off-beat locking, jitter,
   trimming) turns the beat grid into the beat frames of the beat-synchronised
   variant. Emotion targets are noisy functions of the parameters
   (:func:`emotion_function`).
3. *Rendering* (:func:`render`): every note is a harmonic series mapped through
   the exact mel filter bank of the lab's recipe (22050 Hz, n_fft 2048, hop 512,
   128 Slaney mels, Hann window), shaped by the timbre; drums are broadband
   profiles with exponential decay over a few frames; hiss is a constant noise
   floor at an absolute level (so loud clips show a lower floor after the
   ``ref=np.max`` normalisation); the STFT window's smear over neighbouring
   frames and chi-square-like texture are applied; then
   ``librosa.power_to_db(S, ref=np.max)`` (top_db 80). The chromagram
   follows the same notes through pitch-class profiles of the partials (range of
   ``chroma_cqt``), with a broadband floor, a per-genre sharpness exponent and
   per-frame max normalisation.
4. *Beat variant*: ``librosa.util.sync(full, beat_frames, aggregate=np.median)``
   on the float32 (140, T) array of the same clip.

Everything is vectorised over frames and bands (the spectrogram is one product of
source profiles and envelopes); a clip takes ~25 ms of CPU, about half of it
``np.median`` in the beat sync. Clips are independent, so a small process pool
writes them in any order with byte-identical results.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from jaxmusic import recipe
from jaxmusic.data import lab

# --- the lab's feature recipe -----------------------------------------------------

SR = recipe.SAMPLE_RATE
N_FFT = recipe.N_FFT
HOP = recipe.HOP_LENGTH
FPS = recipe.FRAMES_PER_SECOND
CLIP_SECONDS = recipe.CLIP_SECONDS
TOP_DB = recipe.TOP_DB
GENERATOR = "jaxmusic.data.sample"
FORMAT_VERSION = 1

GROUPS = ("genre", "multitask")          # seed stream index = position here
SET_PAIRS = {
    "genre": ("fma_genre_spectrograms", "fma_genre_spectrograms_beat"),
    "multitask": ("multitask_dataset", "multitask_dataset_beat"),
}
SIZES = ("tiny", "small", "full")
# gzip level of the feature files, (full resolution, beat-synchronised); any level reads
# back the same. Float32 dB values hardly compress: level 1 saves ~14% of a 724 KB
# full-resolution file but costs ~45 ms, more than synthesising the clip. So tiny and
# small store those in the gzip stream uncompressed (level 0: still a valid .gz); the
# small beat files and everything in `full` (where disk matters) are deflated.
GZ_LEVEL = {"tiny": (0, 1), "small": (0, 1), "full": (1, 1)}

# --- genre models --------------------------------------------------------------------
#
# Fields (per genre string; per clip values are drawn around these, see compose()):
#   tempo, tempo_sd  musical tempo in BPM and its log-normal spread
#   drums            drum pattern family (see _DRUM_PATTERNS); perc: drum level (dB vs chords)
#   kick/snare/hat   relative drum levels (dB); decay: drum decay (frames)
#   swing            delay of off-beat eighths (fraction of an eighth; 0.33 = triplet feel)
#   sync             syncopation: probability per bar of extra off-beat kick/snare hits
#   jitter           human timing jitter (ms); drift: tempo wander (log-period AR(1) sd)
#   prog             chord progression style; chord_beats: beats per chord (choices)
#   comp             comping pattern of the chord instrument (see _COMP)
#   sustain, hdecay  chord envelope: sustain level after the attack, decay in frames
#   p_major, p7      probability of the major mode, of seventh chords
#   register         MIDI centre of the chord voicing; bass: bass pattern
#   rolloff, odd     partial power ~ h^-rolloff; odd-only partials (square waves)
#   bright           instrument brightness: partials fall 18 dB/octave above it (Hz)
#   formants         [(Hz, dB, width in octaves)] bumps of the instrument timbre
#   tilt, cutoff     recording chain: dB/octave around 1 kHz, low-pass corner (Hz)
#   noise            hiss level (dB, absolute: the music sits at `loud`)
#   dist             distortion (broadband noise following the chords, dB vs chords)
#   dyn, loud        section-to-section dynamics (dB sd), loudness (dB)
#   melody, mel_div, mel_formant   melody level (dB, None = no melody), notes per beat, formant Hz
#   sharp            chroma sharpness exponent (high = clean tonal chroma)

_BASE = dict(tempo=115.0, tempo_sd=0.12, drums="rock", perc=-3.0, kick=0.0, snare=5.0, hat=3.0,
             decay=4.0, swing=0.03, sync=0.15, jitter=12.0, drift=0.006, prog="pop",
             chord_beats=(4,), comp="eighth", sustain=0.6, hdecay=10.0, p_major=0.6, p7=0.1,
             register=55, bass="beat", rolloff=1.6, odd=False, formants=((800.0, 3.0, 0.7),),
             tilt=-4.0, cutoff=6000.0, noise=-65.0, dist=-30.0, dyn=3.0, loud=-9.0,
             melody=-4.0, mel_div=1, mel_formant=2000.0, sharp=1.4, bright=2500.0)


def _g(**kw) -> dict:
    d = dict(_BASE)
    d.update(kw)
    return d


GENRES: dict[str, dict] = {
    "Rock": _g(tempo=122, drums="rock", dist=-12, tilt=-3.5, cutoff=6500, comp="eighth",
               sustain=0.7, p_major=0.6, melody=-5),
    "Psych-Rock": _g(tempo=110, tempo_sd=0.15, drums="rock", dist=-11, tilt=-4.5, cutoff=5000,
                     comp="quarter", sustain=0.85, hdecay=18, chord_beats=(8,), p_major=0.45,
                     formants=((600.0, 5.0, 0.8),), dyn=5, swing=0.06, sync=0.2, melody=-7),
    "Indie-Rock": _g(tempo=126, drums="rock", dist=-16, tilt=-4, cutoff=5500, comp="eighth",
                     p_major=0.6, sync=0.2, melody=-4),
    "Post-Rock": _g(tempo=104, tempo_sd=0.15, drums="rock", perc=-6, dist=-14, tilt=-4.5,
                    cutoff=5000, comp="arp8", sustain=0.9, hdecay=25, chord_beats=(8,),
                    p_major=0.45, dyn=7, melody=None, loud=-11, prog="modal"),
    "Psych-Folk": _g(tempo=96, tempo_sd=0.16, drums="folk", perc=-12, decay=3, hat=-2, bright=2400,
                     comp="strum", sustain=0.5, hdecay=12, chord_beats=(8,), p_major=0.45,
                     tilt=-5, cutoff=4200, noise=-52, loud=-13, dist=-40, jitter=20,
                     formants=((500.0, 4.0, 0.9),), melody=-4, sharp=1.6),
    "Folk": _g(tempo=100, bright=3000, tempo_sd=0.16, drums="folk", perc=-14, decay=3, comp="strum",
               sustain=0.4, hdecay=8, p_major=0.72, tilt=-5, cutoff=4600, loud=-14, dyn=3,
               dist=-45, jitter=18, noise=-58, melody=-3, sharp=1.9, swing=0.05),
    "Metal": _g(tempo=150, tempo_sd=0.16, drums="metal", perc=0, hat=3, decay=3, dist=-2, bright=4000,
                tilt=-2.0, cutoff=8500, comp="sixteenth", sustain=0.85, p_major=0.2,
                chord_beats=(2, 4), register=45, bass="eighth", noise=-60, loud=-4, dyn=2,
                melody=-8, sharp=0.8, sync=0.1, jitter=8, formants=((1200.0, 4.0, 1.2),)),
    "Punk": _g(tempo=172, bright=3500, tempo_sd=0.1, drums="punk", perc=-1, dist=-5, tilt=-2.5, cutoff=7500,
               comp="eighth", sustain=0.8, chord_beats=(2, 4), p_major=0.55, register=50,
               bass="eighth", loud=-5, dyn=2, melody=-5, sharp=1.0, jitter=14, sync=0.05),
    "Post-Punk": _g(tempo=140, drums="rock", dist=-13, tilt=-3.5, cutoff=5800, comp="quarter",
                    p_major=0.35, register=52, bass="eighth", hdecay=14, formants=((300.0, 5.0, 0.6),),
                    sync=0.2, jitter=9, melody=-6),
    "Trip-Hop": _g(tempo=80, tempo_sd=0.08, drums="halftime", perc=-3, hat=-2, decay=6, swing=0.18, bright=1800,
                   sync=0.3, jitter=7, tilt=-7, cutoff=3500, formants=((120.0, 7.0, 0.8),),
                   p_major=0.25, chord_beats=(8,), comp="pad", sustain=0.95, hdecay=30,
                   noise=-45, loud=-10, prog="modal", bass="kick", melody=-6, mel_div=1, sharp=1.2),
    "Pop": _g(tempo=116, bright=3000, tempo_sd=0.1, drums="rock", perc=-4, sync=0.25, jitter=3, tilt=-3.5,
              cutoff=7500, formants=((2500.0, 4.0, 0.6),), p_major=0.72, comp="quarter",
              sustain=0.8, melody=-1, mel_div=2, mel_formant=2500, loud=-6, dyn=3, sharp=1.8,
              dist=-35, bass="kick"),
    "Electronic": _g(tempo=126, tempo_sd=0.06, drums="four", perc=0, hat=2, decay=3, swing=0.0, bright=3500,
                     sync=0.1, jitter=1, drift=0.0, tilt=-2.5, cutoff=9500,
                     formants=((60.0, 8.0, 0.5),), p_major=0.4, chord_beats=(8,), comp="pad",
                     sustain=1.0, hdecay=40, loud=-5, dyn=4, melody=-8, mel_div=2, prog="modal",
                     bass="kick", dist=-30, sharp=1.2, noise=-80),
    "Hip-Hop": _g(tempo=92, bright=2000, tempo_sd=0.07, drums="hiphop", perc=0, decay=5, swing=0.14, sync=0.35,
                  jitter=4, drift=0.002, tilt=-4.5, cutoff=5200,
                  formants=((80.0, 8.0, 0.6), (1000.0, 4.0, 1.0)), p_major=0.35,
                  chord_beats=(8,), comp="pad", sustain=0.9, hdecay=25, loud=-6, melody=-2,
                  mel_div=2, mel_formant=1000, prog="modal", bass="kick", sharp=0.9, dist=-35),
    "Classical": _g(tempo=92, bright=2000, tempo_sd=0.25, drums="none", perc=-40, jitter=40, drift=0.03,
                    tilt=-6, cutoff=5000, formants=((400.0, 3.0, 1.0),), register=60,
                    p_major=0.6, p7=0.05, chord_beats=(2, 4), comp="rubato", sustain=0.7,
                    hdecay=20, bass="change", noise=-62, dist=-50, dyn=9, loud=-18, melody=0,
                    mel_div=2, mel_formant=1000, prog="classical", sharp=2.2),
    "Blues": _g(tempo=96, tempo_sd=0.15, drums="rock", perc=-8, swing=0.3, sync=0.1, jitter=15,
                tilt=-5, cutoff=4500, register=50, p_major=1.0, p7=1.0, prog="blues",
                chord_beats=(4,), comp="eighth", sustain=0.5, hdecay=10, bass="walk", loud=-12,
                dist=-24, melody=-3, mel_formant=1500, sharp=1.3, noise=-55),
    "Chiptune": _g(tempo=150, tempo_sd=0.12, drums="chip", perc=-6, decay=2, hat=3, swing=0.0, bright=8000,
                   sync=0.2, jitter=0, drift=0.0, tilt=-1, cutoff=10500, odd=True, rolloff=1.0,
                   formants=(), p_major=0.55, chord_beats=(4,), comp="arp16", sustain=0.9,
                   hdecay=6, melody=0, mel_div=4, mel_formant=0.0, sharp=2.6, noise=-90,
                   loud=-6, dyn=1, dist=-60, register=62, bass="eighth"),
    "Jazz": _g(tempo=132, tempo_sd=0.25, drums="jazz", perc=-8, kick=-10, snare=-5, hat=4, bright=2200,
               decay=6, swing=0.33, sync=0.4, jitter=20, drift=0.012, tilt=-5, cutoff=5000,
               register=55, p_major=0.5, p7=0.9, prog="jazz", chord_beats=(2, 4), comp="rubato",
               sustain=0.5, hdecay=10, bass="walk", loud=-14, dyn=5, melody=-2, mel_div=2,
               mel_formant=1500, sharp=1.0, dist=-40, noise=-58),
    "Soundtrack": _g(tempo=90, tempo_sd=0.25, drums="sparse", perc=-18, jitter=25, drift=0.02,
                     tilt=-5, cutoff=6000, register=55, p_major=0.4, chord_beats=(8,),
                     comp="pad", sustain=1.0, hdecay=40, bass="change", loud=-14, dyn=9,
                     melody=-4, sharp=1.6, prog="classical", dist=-50, noise=-70),
    "International": _g(tempo=112, tempo_sd=0.2, drums="hiphop", perc=-6, swing=0.1, sync=0.3,
                        jitter=15, tilt=-4.5, cutoff=5500, formants=((1200.0, 4.0, 0.8),),
                        p_major=0.5, comp="offbeat", chord_beats=(4, 8), melody=-2,
                        mel_div=2, mel_formant=1200, sharp=1.5, prog="modal", loud=-10),
    "Old-Time": _g(tempo=116, bright=2200, tempo_sd=0.12, drums="folk", perc=-16, swing=0.1, jitter=18,
                   comp="strum", sustain=0.3, hdecay=6, register=58, p_major=0.85,
                   chord_beats=(8,), tilt=-6, cutoff=3400, noise=-33, loud=-12, dist=-40,
                   melody=-2, mel_div=2, mel_formant=1800, sharp=1.7),
}

# Unequal, FMA-like frequencies of the genre strings (relative weights).
GENRE_WEIGHTS: dict[str, float] = {
    "Rock": 14, "Psych-Rock": 4, "Indie-Rock": 5, "Post-Rock": 4, "Psych-Folk": 3, "Folk": 8,
    "Metal": 4, "Punk": 6, "Post-Punk": 3, "Trip-Hop": 3, "Pop": 6, "Electronic": 13,
    "Hip-Hop": 9, "Classical": 4, "Blues": 2, "Chiptune": 3, "Jazz": 3, "Soundtrack": 4,
    "International": 4, "Old-Time": 1.5,
}
assert set(GENRES) == set(lab.GENRE_STRINGS) == set(GENRE_WEIGHTS)

# Per-clip spread of the genre parameters (the source of class overlap).
SPREAD = dict(tilt=2.5, cutoff_oct=0.6, formant_oct=0.4, formant_db=3.5, eq_db=5.0, noise=9.0,
              dist=6.0, perc=4.0, loud=3.5, swing=0.05, sync=0.08, jitter=0.4, dyn=0.4,
              rolloff=0.35, register=5, sharp=0.3, sustain=0.12, hdecay=0.3, bright_oct=0.5,
              resonance_db=4.5)

# Drum patterns: probability of a hit on each 16th step of a 4/4 bar.
_S = np.zeros(16)         # silent


def _steps(*idx, p=1.0, base=None):
    v = np.zeros(16) if base is None else np.array(base, float)
    v[list(idx)] = p
    return v


_EIGHTHS = (0, 2, 4, 6, 8, 10, 12, 14)
_DRUM_PATTERNS: dict[str, dict[str, np.ndarray]] = {
    "rock": dict(kick=_steps(0, 8, base=_steps(10, 6, p=0.3)), snare=_steps(4, 12),
                 hat=_steps(*_EIGHTHS, p=0.95)),
    "four": dict(kick=_steps(0, 4, 8, 12), snare=_steps(4, 12, p=0.7),
                 hat=_steps(2, 6, 10, 14, base=_steps(*range(16), p=0.3))),
    "hiphop": dict(kick=_steps(0, base=_steps(3, 7, 10, 14, p=0.45)), snare=_steps(4, 12),
                   hat=_steps(*_EIGHTHS, p=0.9, base=_steps(*range(16), p=0.3))),
    "halftime": dict(kick=_steps(0, base=_steps(6, 10, 3, p=0.4)), snare=_steps(8),
                     hat=_steps(*_EIGHTHS, p=0.6, base=_steps(*range(16), p=0.25))),
    "jazz": dict(kick=_steps(0, 4, 8, 12, p=0.25), snare=_steps(*_EIGHTHS, p=0.15),
                 hat=_steps(0, 4, 6, 8, 12, 14, p=0.95)),
    "folk": dict(kick=_steps(0, 8, p=0.5), snare=_steps(4, 12, p=0.4), hat=_steps(*_EIGHTHS, p=0.3)),
    "metal": dict(kick=_steps(*range(16), p=0.85), snare=_steps(4, 12),
                  hat=_steps(0, 4, 8, 12, p=0.8)),
    "punk": dict(kick=_steps(0, 4, 6, 8, 12, 14, p=0.8), snare=_steps(4, 12),
                 hat=_steps(*_EIGHTHS)),
    "chip": dict(kick=_steps(0, 8), snare=_steps(4, 12), hat=_steps(*range(16), p=0.7)),
    "sparse": dict(kick=_steps(0, p=0.3), snare=_S, hat=_steps(0, 8, p=0.15)),
    "none": dict(kick=_S, snare=_S, hat=_S),
}
# Chord articulation steps per bar (16ths). "arp*" articulate one chord tone per step.
_COMP: dict[str, tuple[int, ...]] = {
    "pad": (), "quarter": (0, 4, 8, 12), "eighth": _EIGHTHS, "sixteenth": tuple(range(16)),
    "strum": (0, 4, 6, 8, 12, 14), "offbeat": (2, 6, 10, 14), "arp8": _EIGHTHS,
    "arp16": tuple(range(16)), "rubato": (0, 8),
}
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_PROGRESSIONS = {
    ("pop", True): [(0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (0, 3, 0, 4), (5, 3, 0, 4)],
    ("pop", False): [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)],
    ("modal", True): [(0, 0, 3, 3), (0, 6, 0, 6), (0, 1), (0, 3)],
    ("modal", False): [(0, 0, 5, 5), (0, 6, 0, 6), (0, 3), (0, 5, 6, 0)],
    ("jazz", True): [(1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 4)],
    ("jazz", False): [(1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4)],
    ("classical", True): [(0, 3, 4, 0), (0, 5, 1, 4, 0, 3, 4, 0), (0, 4, 5, 2, 3, 0, 3, 4)],
    ("classical", False): [(0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 2, 5, 1, 4, 0, 4)],
}
_BLUES_12 = (0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7)   # chord roots in semitones, dominant 7ths


# --- precomputed tables (mel filter bank, tone responses, drum spectra) ------------

GRID_MIDI0 = 12.0      # fine pitch grid: MIDI 12 .. 127 in 1/8 semitones
GRID_STEP = 8


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
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


@dataclasses.dataclass
class Layer:
    """Articulations of one instrument: each holds its unit (a set of MIDI notes)
    until the next one, with an attack-decay-sustain envelope."""

    times: np.ndarray        # (n,) frame of each articulation (fractional, sorted)
    units: np.ndarray        # (n,) index into `notes`
    vel: np.ndarray          # (n,) power gain (0 = rest)
    notes: list              # list of tuples of MIDI notes
    sustain: float
    decay: float             # frames
    level_db: float
    timbre: dict             # rolloff, odd, formants


@dataclasses.dataclass
class Score:
    genre: str
    T: int
    params: dict              # scalar per-clip parameters (documented in compose())
    beat_times: np.ndarray    # musical beats (fractional frames)
    beat_frames: np.ndarray   # tracked beats (int frames) used for the beat variant
    layers: dict              # name -> Layer
    drums: dict               # name -> (times, velocities)
    gain_db: np.ndarray       # (T,) dynamics of the music
    eq_db: np.ndarray         # (128,) recording chain + production EQ
    emotion_fn: np.ndarray    # (3,) noiseless valence, energy, danceability
    targets: np.ndarray       # (3,) noisy targets in [0, 1]


def _clip(x, lo, hi) -> float:
    return float(min(max(x, lo), hi))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def emotion_function(p: dict) -> np.ndarray:
    """Noiseless (valence, energy, danceability) of a clip from its parameters.

    * valence = s(0.9 m + 0.8 log2(tempo/110) + 0.2 b - 0.05), m = +1 major / -1 minor,
      b = brightness = (tilt + 4)/1.5 + log2(cutoff / 5500) (both recording-chain params);
    * energy = s(0.11 (loud + 9) + 0.65 ln(onset_rate / 6) + 0.025 (dist + 20));
    * danceability = s(1.6 (regularity - 0.55) + 1.3 (tempo_fit - 0.5) + (pulse - 0.5)),
      regularity = exp(-jitter/20 ms) exp(-drift/0.015), tempo_fit = exp(-(log2(tempo/120)/0.35)^2),
      pulse = s((perc + 9)/3) (how present the drums are);
    where s is the logistic function. See docs/sample_data.md.
    """
    m = 1.0 if p["major"] else -1.0
    b = (p["tilt"] + 4.0) / 1.5 + math.log2(p["cutoff"] / 5500.0)
    valence = _sigmoid(0.9 * m + 0.8 * math.log2(p["tempo"] / 110.0) + 0.2 * b - 0.05)
    energy = _sigmoid(0.11 * (p["loud"] + 9.0) + 0.65 * math.log(p["onset_rate"] / 6.0)
                      + 0.025 * (p["dist"] + 20.0))
    reg = math.exp(-p["jitter"] / 20.0) * math.exp(-p["drift"] / 0.015)
    fit = math.exp(-(math.log2(p["tempo"] / 120.0) / 0.35) ** 2)
    pulse = _sigmoid((p["perc"] + 9.0) / 3.0)
    dance = _sigmoid(1.6 * (reg - 0.55) + 1.3 * (fit - 0.5) + 1.0 * (pulse - 0.5))
    return np.array([valence, energy, dance])


EMOTION_NOISE = 0.13      # sd of the additive noise on each target (before clipping)


def _chord(degree: int, scale: np.ndarray, key: int, seventh: bool, raise_v: bool) -> tuple:
    idx = degree + np.array([0, 2, 4] + ([6] if seventh else []))
    pcs = scale[idx % 7] + 12 * (idx // 7)
    pcs = pcs.copy()
    if raise_v and degree % 7 == 4:       # harmonic minor: major V
        pcs[1] += 1
    return tuple(int(key + p) for p in pcs)


def _voice(pcs: Iterable[int], center: float) -> tuple:
    """Place pitch classes in the octave around `center` (MIDI)."""
    out = []
    for p in pcs:
        m = p % 12 + 12 * round((center - p % 12) / 12)
        out.append(int(m))
    return tuple(sorted(out))


def compose(seed: int, group: str, index: int, genre: str) -> Score:
    """Draw the parameters and lay out the score of one clip (cheap, no rendering).

    Seeded by ``np.random.default_rng([seed, group_index, index, 0])`` alone, so
    any clip can be recomputed on its own, in any order or process.
    """
    G = GENRES[genre]
    rng = np.random.default_rng([seed, GROUPS.index(group), index, 0])
    sp = SPREAD
    T = int(rng.choice([1291, 1292, 1293], p=[0.15, 0.25, 0.6]))

    # ---- per-clip parameters around the genre's
    tempo = _clip(G["tempo"] * math.exp(rng.normal(0, G["tempo_sd"])), 55, 215)
    major = bool(rng.random() < G["p_major"])
    key = int(rng.integers(12))
    loud = float(G["loud"] + rng.normal(0, sp["loud"]))
    swing = _clip(G["swing"] + rng.normal(0, sp["swing"]), 0, 0.45)
    sync = _clip(G["sync"] + rng.normal(0, sp["sync"]), 0, 0.8)
    jitter = float(G["jitter"] * math.exp(rng.normal(0, sp["jitter"])))
    drift = float(G["drift"] * math.exp(rng.normal(0, sp["jitter"])))
    perc = float(G["perc"] + rng.normal(0, sp["perc"]))
    tilt = float(G["tilt"] + rng.normal(0, sp["tilt"]))
    cutoff = _clip(G["cutoff"] * 2 ** rng.normal(0, sp["cutoff_oct"]), 1500, 11000)
    noise = float(G["noise"] + rng.normal(0, sp["noise"]))
    dist = float(G["dist"] + rng.normal(0, sp["dist"]))
    dyn = float(G["dyn"] * math.exp(rng.normal(0, sp["dyn"])))
    sustain = _clip(G["sustain"] + rng.normal(0, sp["sustain"]), 0.05, 1.0)
    hdecay = float(G["hdecay"] * math.exp(rng.normal(0, sp["hdecay"])))
    rolloff = float(max(0.5, G["rolloff"] + rng.normal(0, sp["rolloff"])))
    register = float(G["register"] + rng.normal(0, sp["register"]))
    sharp = float(max(0.5, G["sharp"] + rng.normal(0, sp["sharp"])))
    bright = float(G["bright"] * 2 ** rng.normal(0, sp["bright_oct"]))
    formants = [(fc * 2 ** rng.normal(0, sp["formant_oct"]), g + rng.normal(0, sp["formant_db"]), w)
                for fc, g, w in G["formants"]]
    # two random, genre-independent resonances per clip (instrument/room differences)
    for _ in range(2):
        formants.append((float(2 ** rng.uniform(np.log2(150), np.log2(6000))),
                         float(rng.normal(0, sp["resonance_db"])), float(rng.uniform(0.3, 1.0))))
    chord_beats = int(rng.choice(G["chord_beats"]))
    params = dict(genre=genre, T=T, tempo=tempo, major=major, key=key, loud=loud, swing=swing,
                  sync=sync, jitter=jitter, drift=drift, perc=perc, tilt=tilt, cutoff=cutoff,
                  noise=noise, dist=dist, dyn=dyn, sustain=sustain, hdecay=hdecay,
                  rolloff=rolloff, register=register, sharp=sharp, chord_beats=chord_beats,
                  bright=bright)

    # ---- beat grid with tempo drift (AR(1) on the log period)
    period = 60.0 / tempo * FPS
    n_beats = int((T + 2 * period) / period * 1.3) + 8
    x = np.zeros(n_beats)
    if drift > 0:
        e = rng.normal(0, drift, n_beats)
        for i in range(1, n_beats):          # a few hundred steps at most
            x[i] = 0.9 * x[i - 1] + e[i]
    periods = period * np.exp(x)
    start = -rng.uniform(0, period) - period
    beat_times = start + np.concatenate([[0.0], np.cumsum(periods[:-1])])
    keep = beat_times < T + period
    beat_times, periods = beat_times[keep], periods[keep]
    nb = len(beat_times)
    bar_phase = int(rng.integers(4))                     # which beat of the bar is first
    beat_in_bar = (np.arange(nb) + bar_phase) % 4
    # 16th-step positions within each beat, swung
    frac = np.array([0.0, 0.25, 0.5, 0.75])
    frac = frac + swing * np.array([0.0, 0.125, 0.5, 0.125]) * (frac > 0)
    step_t = beat_times[:, None] + frac[None, :] * periods[:, None]     # (nb, 4)
    step_id = beat_in_bar[:, None] * 4 + np.arange(4)[None, :]          # 0..15 in the bar
    jit = jitter / 1000.0 * FPS

    # ---- sections: dynamics, intro without drums, crescendo
    sec_len = int(rng.choice([16, 32]))                                  # beats per section
    n_sec = nb // sec_len + 2
    comp_db = dyn * math.exp(-max(0.0, loud + 12.0) / 8.0)               # loud clips are compressed
    sec_db = rng.normal(0, comp_db, n_sec)
    sec_of_beat = (np.arange(nb) + bar_phase) // sec_len
    drums_on = np.ones(nb, bool)                                         # per beat
    if rng.random() < 0.2:                                               # intro without drums
        drums_on[: int(rng.choice([8, 16])) + int(np.searchsorted(beat_times, 0))] = False
    frames = np.arange(T)
    beat_idx = np.clip(np.searchsorted(beat_times, frames, side="right") - 1, 0, nb - 1)
    gain_db = np.convolve(sec_db[sec_of_beat][beat_idx], np.ones(9) / 9, mode="same")
    if G["dyn"] >= 7 and rng.random() < 0.5:                             # crescendo
        gain_db = gain_db + np.linspace(-dyn, 0.5 * dyn, T)
    if rng.random() < 0.1:                                               # fade in
        gain_db = gain_db + np.minimum(0.0, -30.0 + 30.0 * frames / rng.uniform(80, 200))

    # ---- drums
    pat = _DRUM_PATTERNS[G["drums"]]
    drums = {}
    onset_count = 0.0
    audible = _sigmoid((perc + 15.0) / 3.0)                                # drums heard at all?
    base_bar = {k: rng.random(16) < v for k, v in pat.items()}           # the clip's groove
    for name, probs in pat.items():
        hits = base_bar[name][step_id].copy()
        vary = rng.random(hits.shape) < 0.08                             # fills / variations
        hits ^= vary & (rng.random(hits.shape) < probs[step_id] + 0.05)
        if name in ("kick", "snare") and sync > 0:
            offb = np.isin(step_id % 4, (1, 3)) | ((step_id % 4) == 2)
            extra = offb & (rng.random(hits.shape) < sync * 0.12) & probs.any()
            hits |= extra
        hits &= drums_on[:, None]
        t = step_t[hits] + rng.normal(0, jit, hits.sum())
        accent = np.where(step_id[hits] % 4 == 0, 1.0, 0.6)
        v = accent * np.exp(rng.normal(0, 0.25, hits.sum()))
        inside = (t > -3) & (t < T + 3)
        drums[name] = (t[inside], v[inside])
        onset_count += float(np.sum(v[inside] > 0.3)) * audible
    if not any(len(t) for t, _ in drums.values()):
        perc = -60.0
        params["perc"] = perc

    # ---- harmony
    scale = _MAJOR if major else _MINOR
    style = G["prog"]
    if style == "blues":
        roots = [key + r for r in _BLUES_12]
        chords_pc = [tuple(r + i for i in (0, 4, 7, 10)) for r in roots]
    else:
        opts = _PROGRESSIONS[(style, major)]
        prog = opts[int(rng.integers(len(opts)))]
        raise_v = style in ("classical", "jazz") and not major
        chords_pc = [_chord(d, scale, key, rng.random() < G["p7"], raise_v) for d in prog]
    chord_of_beat = ((np.arange(nb) + bar_phase) // chord_beats) % len(chords_pc)
    voiced = [_voice(c, register) for c in chords_pc]

    layers = {}
    comp = G["comp"]
    steps = set(_COMP[comp])
    art_t, art_u, art_v = [], [], []
    arp = comp.startswith("arp")
    notes: list = list(voiced)
    if arp:
        notes = []
        arp_index = {}
    skip = rng.random(nb) < 0.5                          # rubato: some beats not re-struck
    for b in range(nb):
        c = int(chord_of_beat[b])
        change = b == 0 or chord_of_beat[b - 1] != c
        for s in range(4):
            sid = int(step_id[b, s])
            if not ((s == 0 and change) or sid in steps):
                continue
            if comp == "rubato" and s == 0 and not change and skip[b]:
                continue
            t = step_t[b, s]
            if arp:
                tones = voiced[c]
                note = (tones[(sid // (1 if comp == "arp16" else 2)) % len(tones)]
                        + (12 if (sid // 8) % 2 and comp == "arp16" else 0),)
                if note not in arp_index:
                    arp_index[note] = len(notes)
                    notes.append(note)
                u = arp_index[note]
            else:
                u = c
            art_t.append(t)
            art_u.append(u)
            art_v.append(1.0 if s == 0 else 0.7)
    art_t = list(np.asarray(art_t) + rng.normal(0, jit, len(art_t)))
    art_v = list(np.asarray(art_v) * np.exp(rng.normal(0, 0.2, len(art_v))))
    if comp == "rubato":                                # free extra articulations
        k = int(rng.poisson(nb * 0.5))
        art_t += list(rng.uniform(0, T, k))
        art_u += [int(chord_of_beat[i]) for i in np.clip(
            np.searchsorted(beat_times, art_t[-k:]) - 1, 0, nb - 1)] if k else []
        art_v += list(0.6 * np.exp(rng.normal(0, 0.3, k)))
    order = np.argsort(art_t, kind="stable")
    timbre = dict(rolloff=rolloff, odd=G["odd"], formants=formants, bright=bright)
    layers["chords"] = Layer(np.asarray(art_t)[order], np.asarray(art_u, int)[order],
                             np.asarray(art_v)[order], notes, sustain, hdecay, 0.0, timbre)
    onset_count += 0.5 * len(art_t)

    # bass
    bass_pat = G["bass"]
    bt, bu, bv, bnotes, bidx = [], [], [], [], {}
    bass_center = 38.0 + rng.normal(0, 2)
    kick_t = drums.get("kick", (np.zeros(0), None))[0]
    for b in range(nb):
        c = int(chord_of_beat[b])
        root = chords_pc[c][0]
        change = b == 0 or chord_of_beat[b - 1] != c
        if bass_pat == "walk":
            pcs = [root, chords_pc[c][1], chords_pc[c][2], root + 2][int(beat_in_bar[b])]
            times = [step_t[b, 0]]
        elif bass_pat == "change":
            if not change:
                continue
            pcs, times = root, [step_t[b, 0]]
        elif bass_pat == "eighth":
            pcs, times = root, [step_t[b, 0], step_t[b, 2]]
        elif bass_pat == "kick":
            in_beat = kick_t[(kick_t >= step_t[b, 0] - 1) & (kick_t < step_t[b, 0] + periods[b] - 1)]
            times = list(in_beat) + ([step_t[b, 0]] if change and not len(in_beat) else [])
            pcs = root
        else:
            pcs, times = root, [step_t[b, 0]]
        note = _voice([pcs], bass_center)
        if note not in bidx:
            bidx[note] = len(bnotes)
            bnotes.append(note)
        for t in times:
            bt.append(t)
            bu.append(bidx[note])
    bt = np.asarray(bt) + rng.normal(0, jit * 0.5, len(bt))
    bv = np.exp(rng.normal(0, 0.15, len(bt)))
    order = np.argsort(bt, kind="stable")
    layers["bass"] = Layer(np.asarray(bt)[order], np.asarray(bu, int)[order], np.asarray(bv)[order],
                           bnotes, 0.6, 12.0, -3.0 + rng.normal(0, 2),
                           dict(rolloff=2.2, odd=False, formants=[], bright=800.0))

    # melody: a random walk on the scale, snapped to chord tones on strong beats, with rests
    if G["melody"] is not None:
        div = int(G["mel_div"])
        mt, mu, mv, mnotes, midx = [], [], [], [], {}
        deg = int(rng.integers(7))
        center = register + 12
        rest = rng.random((nb, div)) < 0.25
        moves = np.array([-2, -1, -1, 0, 1, 1, 2])[rng.integers(7, size=(nb, div))]
        snap = rng.random(nb) < 0.6
        for b in range(nb):
            c = int(chord_of_beat[b])
            for s in range(div):
                pos = s * 4 // div
                if rest[b, s]:
                    mt.append(step_t[b, pos])
                    mu.append(0)
                    mv.append(0.0)
                    continue
                deg = min(max(deg + int(moves[b, s]), -4), 11)
                pitch = int(key + scale[deg % 7] + 12 * (deg // 7))
                if s == 0 and snap[b]:
                    pitch = min(chords_pc[c], key=lambda q: abs((q - pitch + 6) % 12 - 6))
                note = _voice([pitch], center)
                if note not in midx:
                    midx[note] = len(mnotes)
                    mnotes.append(note)
                mt.append(step_t[b, pos])
                mu.append(midx[note])
                mv.append(1.0)
        if not mnotes:
            mnotes = [(int(center),)]
        mt = np.asarray(mt) + rng.normal(0, jit, len(mt))
        mv = np.asarray(mv) * np.exp(rng.normal(0, 0.25, len(mv)))
        order = np.argsort(mt, kind="stable")
        mform = [(G["mel_formant"] * 2 ** rng.normal(0, 0.2), 6.0, 0.5)] if G["mel_formant"] else []
        layers["melody"] = Layer(np.asarray(mt)[order], np.asarray(mu, int)[order],
                                 np.asarray(mv)[order], mnotes, 0.7, 15.0,
                                 float(G["melody"] + rng.normal(0, 2)),
                                 dict(rolloff=1.2 if not G["odd"] else 1.0, odd=G["odd"],
                                      formants=mform, bright=bright * 1.3))
        onset_count += 0.3 * float(np.sum(np.asarray(mv) > 0))

    # ---- recording chain and production EQ (dB per mel band)
    fc = _tables()["mel_fc"]
    eq = (tilt * np.log2(np.maximum(fc, 80.0) / 1000.0)
          - 24.0 * np.maximum(0.0, np.log2(fc / cutoff))
          - 24.0 * np.maximum(0.0, np.log2(35.0 / fc)))
    m = np.arange(lab.N_MEL) / (lab.N_MEL - 1)
    for k in range(1, 5):
        eq = eq + rng.normal(0, sp["eq_db"] / k ** 0.5) * np.cos(np.pi * k * m + rng.uniform(0, 2 * np.pi))

    # ---- the beat tracker's view
    ttempo = tempo
    track_t = beat_times.copy()
    u = rng.random(3)
    if tempo < 92 and u[0] < 0.85:                        # octave error: double time
        ttempo = 2 * tempo
        track_t = np.sort(np.concatenate([beat_times, beat_times + periods / 2]))
    elif tempo > 175 and u[0] < 0.2:                      # half time
        ttempo = tempo / 2
        track_t = beat_times[::2]
    pulse = _sigmoid((perc + 9.0) / 3.0)
    if u[1] < 0.08 + 0.25 * sync:                         # locked onto the off-beats
        track_t = track_t + 0.5 * 60.0 / ttempo * FPS
    track_t = track_t + rng.normal(0, 0.5 + 2.5 * (1 - pulse) + jit * 0.5, len(track_t))
    lo, hi = rng.uniform(2, 40), T - rng.uniform(2, 40)   # leading/trailing beats are trimmed
    beat_frames = np.unique(np.round(track_t[(track_t >= lo) & (track_t <= hi)]).astype(np.int64))

    params.update(tracked_tempo=ttempo, onset_rate=max(onset_count, 1.0) * FPS / T,
                  n_beats=int(len(beat_frames)))
    fn = emotion_function(params)
    targets = np.clip(fn + rng.normal(0, EMOTION_NOISE, len(recipe.TARGETS)), 0.0, 1.0)
    return Score(genre, T, params, beat_times, beat_frames, layers, drums, gain_db, eq, fn, targets)


# --- rendering ---------------------------------------------------------------------


def _note_profiles(notes: Sequence[tuple], timbre: dict, bright: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mel power (128, n) and chroma power (12, n) of each unit (a set of MIDI notes).

    Partial h of a note has power h^-rolloff (odd h only for square waves), times the
    formant bumps, times a -18 dB/octave roll-off above ``bright`` Hz; 10% of the
    power is spread over neighbouring bands (vibrato, reverb, room)."""
    tb = _tables()
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
    """The (T, 140) float32 fused features (mel dB over chroma) of a composed clip.

    Every source is a fixed spectral profile (mel power per band) times an envelope
    over frames, so the spectrogram is one product ``profiles @ envelopes`` for the
    steady tones and one for the noise-like sources.
    """
    import librosa

    tb = _tables()
    f4 = np.float32
    rng = np.random.default_rng([seed, GROUPS.index(group), index, 1])
    p, T = score.params, score.T
    ar = np.arange(T)
    # tones: body and (brighter) attack profile of every unit of every layer
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
    M = float((P.sum(0) @ W).mean())                        # mean harmonic power per frame
    # drums: impulses decaying over a few frames
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
    scale = 10.0 ** (p["perc"] / 10.0) * M / ptot if ptot > 0 else 0.0
    perc_env *= scale
    gain = 10.0 ** ((p["loud"] + score.gain_db) / 10.0)
    # noise-like: drums, distortion buzz following the chords, hiss at an absolute level
    dist_env = harm_env * 10.0 ** (p["dist"] / 10.0) * M
    Pn = np.stack(nprof + [tb["buzz"], tb["hiss"]], axis=1)
    Wn = np.stack([r * scale * gain for r in nrows]
                  + [dist_env * gain, np.full(T, 10.0 ** (p["noise"] / 10.0))])
    with _one_blas_thread():            # tiny products: threads only cost, esp. on a busy box
        tone = P.astype(f4) @ (W * gain).astype(f4)
        noisy = Pn.astype(f4) @ Wn.astype(f4)
        chroma = np.concatenate(cprof, axis=1).astype(f4) @ np.concatenate(crows, 0).astype(f4)
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
    chroma *= f4(M / (float(chroma.sum(0, dtype=np.float64).mean()) + 1e-12))
    zc = rng.standard_normal((2, 12, T), dtype=f4)
    cpow = chroma + (broad * (0.5 / 12)).astype(f4)[None, :] * np.exp(f4(0.6) * zc[0])
    cpow = cpow * np.exp(f4(0.25) * zc[1]) + f4(1e-9)
    cpow = _smear(cpow, tb["smear"].astype(f4))
    c = cpow ** f4(p["sharp"] / 2)
    c = c / c.max(axis=0, keepdims=True)
    out = np.concatenate([mel_db, c], axis=0).astype(np.float32)      # (140, T)
    return np.ascontiguousarray(out.T)


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
        return ThreadpoolController()
    except Exception:  # threadpoolctl comes with scikit-learn; without it, leave BLAS alone
        return None


def _one_blas_thread():
    ctl = _blas_controller()
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")


def _smear(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Convolve along time with the 5-tap window kernel (edges replicated)."""
    xp = np.concatenate([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], axis=1)
    T = x.shape[1]
    return sum(k[i] * xp[:, i:i + T] for i in range(5))


def _warm_up() -> None:
    import librosa

    _tables()
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


def clip_beats(seed: int, group: str, index: int, genre: str) -> np.ndarray:
    """The beat frames used for the beat-synchronised variant of a clip."""
    return compose(seed, group, index, genre).beat_frames


# --- the plan: which clips, ids, splits, file-name quirks ---------------------------


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    group: str            # "genre" or "multitask"
    index: int            # seed index within the group
    split: str            # "train" or "test"
    id: str
    genre: str            # for multitask clips: the genre model used (not written)
    gz_full: bool         # False: the full-set file is written unpacked (.npy)
    gz_beat: bool
    label_full: str       # name in the full set's label file (genre sets)
    label_beat: str       # name in the beat set's label file


_COUNTS = {
    # (genre train, genre test, multitask train, multitask test)
    "tiny": (160, 40, 120, 40),
    "small": (500, 150, 300, 80),
    "full": (3067, 767, 1198, 299),
}


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    rest = total - minimum * len(weights)
    raw = rest * weights / weights.sum()
    n = np.floor(raw).astype(int)
    order = np.argsort(-(raw - n), kind="stable")
    n[order[: rest - n.sum()]] += 1
    return n + minimum


def plan(size: str = "small", seed: int = 0) -> list[ClipSpec]:
    """Every clip of a generation, in label-file order (deterministic)."""
    if size not in _COUNTS:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    g_train, g_test, m_train, m_test = _COUNTS[size]
    rng = np.random.default_rng([seed, 7919])
    names = list(lab.GENRE_STRINGS)
    w = np.array([GENRE_WEIGHTS[g] for g in names], float)
    if size == "tiny":
        n_train = np.full(len(names), g_train // len(names))
        n_test = np.full(len(names), g_test // len(names))
    else:
        n_train = _allocate(g_train, w, 3)
        n_test = _allocate(g_test, w, 1)
    specs: list[ClipSpec] = []
    ids = rng.choice(np.arange(100, 156000), g_train + g_test, replace=False)
    index = 0
    for split, counts in (("train", n_train), ("test", n_test)):
        genres = np.repeat(np.array(names), counts)
        rng.shuffle(genres)
        for g in genres:
            cid = str(int(ids[index]))
            u = rng.random(4)
            gz_full, gz_beat = bool(u[0] >= 0.03), bool(u[1] >= 0.03)
            lf = lab.feature_file_name(cid, gz=True)              # unpacked files still say .gz
            lb = f"{cid}.beatsync.fused.npy" + ("" if gz_beat else ".gz")
            if split == "test" and u[2] < 0.25:
                lf = f"{cid}.full.fused.npy.gz"
            if split == "test" and u[3] < 0.25:
                lb = f"{cid}.full.fused.npy.gz"
            specs.append(ClipSpec("genre", index, split, cid, str(g), gz_full, gz_beat, lf, lb))
            index += 1
    mids = rng.choice(np.arange(1, 20000), m_train + m_test, replace=False)
    mg = rng.choice(np.array(names), m_train + m_test, p=w / w.sum())
    for i in range(m_train + m_test):
        cid = str(int(mids[i]))
        u = rng.random(2)
        specs.append(ClipSpec("multitask", i, "train" if i < m_train else "test", cid, str(mg[i]),
                              bool(u[0] >= 0.03), bool(u[1] >= 0.03), cid, cid))
    # guarantee every quirk at least once per set and split (tests rely on them)
    for group in GROUPS:
        for split in lab.SPLITS:
            sel = [i for i, s in enumerate(specs) if s.group == group and s.split == split]
            if sel and all(specs[i].gz_full for i in sel):
                s = specs[sel[0]]
                specs[sel[0]] = dataclasses.replace(s, gz_full=False)
            if sel and all(specs[i].gz_beat for i in sel):
                s = specs[sel[-1]]
                lb = s.label_beat if group == "multitask" or s.label_beat.endswith(".gz") \
                    else s.label_beat + ".gz"
                specs[sel[-1]] = dataclasses.replace(s, gz_beat=False, label_beat=lb)
            if group == "genre" and split == "test" and sel:
                if not any(specs[i].label_full.endswith(".full.fused.npy.gz") for i in sel):
                    s = specs[sel[1 % len(sel)]]
                    specs[sel[1 % len(sel)]] = dataclasses.replace(
                        s, label_full=f"{s.id}.full.fused.npy.gz")
    return specs


def find_clip(specs: Sequence[ClipSpec], clip_id: str, group: str) -> ClipSpec:
    for s in specs:
        if s.id == clip_id and s.group == group:
            return s
    raise KeyError(f"no {group} clip {clip_id!r} in the plan")


# --- writing -------------------------------------------------------------------------


def _clip_paths(out: Path, spec: ClipSpec) -> tuple[Path, Path]:
    full_set, beat_set = SET_PAIRS[spec.group]
    return (out / full_set / spec.split / lab.feature_file_name(spec.id, gz=spec.gz_full),
            out / beat_set / spec.split / lab.feature_file_name(spec.id, gz=spec.gz_beat))


def _make_clip(job: tuple) -> tuple:
    seed, out, spec, (level_full, level_beat) = job
    clip = synthesize(seed, spec.group, spec.index, spec.genre)
    pf, pb = _clip_paths(Path(out), spec)
    lab.save_features(pf, clip.full, gz=spec.gz_full, compresslevel=level_full)
    lab.save_features(pb, clip.beat, gz=spec.gz_beat, compresslevel=level_beat)
    p = clip.score.params
    row = dict(set=spec.group, split=spec.split, id=spec.id, genre=spec.genre,
               frames=clip.full.shape[0], beat_frames=clip.beat.shape[0],
               tempo=p["tempo"], tracked_tempo=p["tracked_tempo"], key=p["key"],
               mode="major" if p["major"] else "minor", loud=p["loud"], onset_rate=p["onset_rate"],
               jitter_ms=p["jitter"], drift=p["drift"], perc=p["perc"], tilt=p["tilt"],
               cutoff=p["cutoff"], dist=p["dist"],
               valence_fn=clip.score.emotion_fn[0], energy_fn=clip.score.emotion_fn[1],
               danceability_fn=clip.score.emotion_fn[2])
    return spec.group, spec.index, clip.score.targets, row


_OWN_SETS = tuple(n for pair in SET_PAIRS.values() for n in pair)


def _prepare_out(out: Path, overwrite: bool) -> None:
    marker = out / "answers" / "summary.json"
    existing = [out / n for n in _OWN_SETS + ("answers",) if (out / n).exists()]
    if existing:
        ours = False
        if marker.exists():
            try:
                ours = json.loads(marker.read_text()).get("generator") == GENERATOR
            except (OSError, ValueError):
                ours = False
        if not (ours or overwrite):
            raise lab.DatasetError(
                f"{', '.join(p.name for p in existing)} already exist and were not written by "
                "sample-data; pass --overwrite (overwrite=True) to replace them", file=out)
        for p in existing:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for n in _OWN_SETS:
        for split in lab.SPLITS:
            (out / n / split).mkdir(parents=True, exist_ok=True)
    (out / "answers").mkdir(parents=True, exist_ok=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def generate(out_dir: str | os.PathLike, size: str = "small", seed: int = 0,
             progress: bool = True, workers: int | None = None,
             overwrite: bool = False) -> dict:
    """Write the four lab sets under ``out_dir``; returns a summary.

    ``answers/`` (outside the sets) holds the hidden multitask test labels
    (``multitask_test_labels.txt``), every clip's generative parameters
    (``clips.csv``) and ``summary.json``. Same size and seed: byte-identical files.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    specs = plan(size, seed)
    _prepare_out(out, overwrite)
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    _warm_up()                     # tables and librosa's lazy imports, once, before forking
    jobs = [(int(seed), str(out), s, GZ_LEVEL[size]) for s in specs]
    results: dict = {}
    rows: dict = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="clip", desc=f"sample-data {size}", file=sys.stderr,
                   dynamic_ncols=True)
    try:
        if workers <= 1:
            it = map(_make_clip, jobs)
            pool = None
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            pool = ctx.Pool(workers)
            it = pool.imap_unordered(_make_clip, jobs, chunksize=2 if len(jobs) < 1000 else 4)
        try:
            for group, index, targets, row in it:
                results[(group, index)] = targets
                rows[(group, index)] = row
                if bar is not None:
                    bar.update(1)
        except BaseException:
            if pool is not None:
                pool.terminate()          # do not finish the queue after an error / Ctrl-C
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    finally:
        if bar is not None:
            bar.close()

    # label files, in plan order
    summary_sets: dict = {}
    for group in GROUPS:
        full_set, beat_set = SET_PAIRS[group]
        for split in lab.SPLITS:
            sel = [s for s in specs if s.group == group and s.split == split]
            for set_name in (full_set, beat_set):
                summary_sets.setdefault(set_name, {})[split] = len(sel)
            if group == "genre":
                lab.write_genre_labels(out / full_set / f"{split}_labels.txt",
                                       [(s.label_full, s.genre) for s in sel])
                lab.write_genre_labels(out / beat_set / f"{split}_labels.txt",
                                       [(s.label_beat, s.genre) for s in sel])
            else:
                rows_t = [(s.id, results[(group, s.index)]) for s in sel]
                if split == "train":
                    lab.write_multitask_labels(out / full_set / "train_labels.txt", rows_t)
                    lab.write_multitask_labels(out / beat_set / "train_labels.txt", rows_t)
                else:
                    lab.write_multitask_labels(out / "answers" / "multitask_test_labels.txt", rows_t)
    fields = list(next(iter(rows.values())).keys())
    with open(out / "answers" / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(fields)
        for s in specs:
            w.writerow([_fmt(rows[(s.group, s.index)][k]) for k in fields])
    genre_counts: dict = {}
    for s in specs:
        if s.group == "genre":
            genre_counts.setdefault(s.split, {}).setdefault(s.genre, 0)
            genre_counts[s.split][s.genre] += 1
    summary = {"generator": GENERATOR, "format_version": FORMAT_VERSION, "size": size,
               "seed": int(seed), "sets": summary_sets,
               "genre_strings": {k: dict(sorted(v.items())) for k, v in genre_counts.items()},
               "clips": len(specs)}
    (out / "answers" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary = dict(summary, out=str(out), seconds=round(time.perf_counter() - t0, 2),
                   workers=workers)
    return summary
