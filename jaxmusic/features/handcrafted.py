"""Handcrafted per-clip features for the classic baselines: the one list, the one module.

Two families, each a fixed, named vector per clip.

**From the lab's spectrogram array** (``(T, 140)``: 128 mel dB rows over 12
chroma rows, full-resolution or beat-synchronised; every set has these):

=====================  =====================================================  =====
name                   definition (over the clip's T frames)                  count
=====================  =====================================================  =====
``mel_mean_k``         mean of mel band k (dB)                                 128
``mel_std_k``          standard deviation of mel band k (``np.std``)           128
``melg_<stat>_g``      the 16 band groups (8 adjacent bands, mean dB), per     96
                       group: ``skew`` (``scipy.stats.skew``, 0 for a flat
                       series), ``p10``/``p50``/``p90`` (``np.percentile``),
                       ``dmean`` (mean of ``|np.diff|``), ``dstd`` (std of
                       ``np.diff``)
``chroma_<stat>_c``    per pitch class: ``mean``, ``std``, ``skew``, ``p10``,   96
                       ``p50``, ``p90``, ``dmean``, ``dstd`` (as above)
``spec_<d>_mean/std``  mean and std over frames of four descriptors of the    8
                       mel spectrum (power ``10 ** (dB / 10)`` at the bands'
                       centre frequencies, :func:`mel_centres`): ``centroid``,
                       ``bandwidth``, ``rolloff`` (85 %), ``flatness``, as
                       ``librosa.feature.spectral_*(S=power, freq=centres)``
``frames``             T (for a beat-synchronised set: the number of beats)   1
=====================  =====================================================  =====

457 in all. A clip of one frame gets zero deltas.

**From the audio** (only when ``jaxmusic features --audio-features`` kept them:
``<set>/audio_features/<id>.npy``, names in ``names.txt`` there):
``mfcc_mean_k`` / ``mfcc_std_k`` for MFCC 1-20 (``librosa.feature.mfcc``,
``n_mfcc=20``), ``zcr_mean``/``zcr_std`` (``zero_crossing_rate``, frame 2048,
hop 512), ``rms_mean``/``rms_std`` (``feature.rms``, same frames), ``tempo``
(``librosa.feature.tempo``, BPM): 45 in all.

The tests compare every entry with numpy's, scipy's and librosa's own functions.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxmusic import recipe

MEL_GROUPS = 16
PERCENTILES = (10, 50, 90)
ROLL_PERCENT = 0.85
FLATNESS_AMIN = 1e-10
SPECTRAL = ("centroid", "bandwidth", "rolloff", "flatness")
SERIES_STATS = ("skew", "p10", "p50", "p90", "dmean", "dstd")
N_MFCC = 20


@functools.lru_cache(maxsize=None)
def feature_names() -> tuple[str, ...]:
    """The names of :func:`spectrogram_features`' entries, in order."""
    names = [f"mel_mean_{k:03d}" for k in range(recipe.N_MELS)]
    names += [f"mel_std_{k:03d}" for k in range(recipe.N_MELS)]
    names += [f"melg_{s}_{g:02d}" for g in range(MEL_GROUPS) for s in SERIES_STATS]
    names += [f"chroma_{s}_{c:02d}" for c in range(recipe.N_CHROMA)
              for s in ("mean", "std") + SERIES_STATS]
    names += [f"spec_{d}_{s}" for d in SPECTRAL for s in ("mean", "std")]
    names.append("frames")
    return tuple(names)


@functools.lru_cache(maxsize=None)
def mel_centres(sample_rate: int = recipe.SAMPLE_RATE, fmax: float | None = None,
                n_mels: int = recipe.N_MELS) -> np.ndarray:
    """Centre frequency (Hz) of each Slaney mel band of ``librosa.filters.mel``."""
    import librosa

    fmax = sample_rate / 2 if fmax is None else fmax
    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=fmax)[1:-1]


def _skew(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.skew(x, axis=0)`` (biased), 0 where a column is flat."""
    d = x - x.mean(axis=0)
    m2 = (d * d).mean(axis=0)
    m3 = (d * d * d).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m3 / m2 ** 1.5
    # A flat column (m2 at float rounding level): 0, not the ratio of two roundings.
    flat = m2 <= (np.finfo(np.float64).eps * np.maximum(np.abs(x).max(axis=0), 1.0)) ** 2
    return np.where(flat, 0.0, out)


def _series_stats(x: np.ndarray) -> np.ndarray:
    """``(T, C)`` -> ``(C, 6)``: skew, p10, p50, p90, mean |delta|, std delta."""
    pct = np.percentile(x, PERCENTILES, axis=0)                      # (3, C)
    if x.shape[0] > 1:
        d = np.diff(x, axis=0)
        dmean, dstd = np.abs(d).mean(axis=0), d.std(axis=0)
    else:
        dmean = dstd = np.zeros(x.shape[1])
    return np.stack([_skew(x), pct[0], pct[1], pct[2], dmean, dstd], axis=1)


def spectral_descriptors(mel_db: np.ndarray, sample_rate: int = recipe.SAMPLE_RATE,
                         fmax: float | None = None) -> np.ndarray:
    """``(T, n_mels)`` mel dB -> ``(T, 4)``: centroid, bandwidth, roll-off (Hz) and
    flatness of the mel power spectrum, per frame."""
    power = np.power(10.0, np.asarray(mel_db, np.float64) / 10.0)       # (T, M)
    freq = mel_centres(sample_rate, fmax, power.shape[1])
    total = power.sum(axis=1, keepdims=True)
    weights = power / np.where(total > 0, total, 1.0)
    centroid = weights @ freq
    bandwidth = np.sqrt((weights * (freq[None, :] - centroid[:, None]) ** 2).sum(axis=1))
    cum = np.cumsum(power, axis=1)
    reached = cum >= ROLL_PERCENT * cum[:, -1:]
    rolloff = freq[np.argmax(reached, axis=1)]
    p = np.maximum(power, FLATNESS_AMIN)
    flatness = np.exp(np.log(p).mean(axis=1)) / p.mean(axis=1)
    return np.stack([centroid, bandwidth, rolloff, flatness], axis=1)


def spectrogram_features(x: np.ndarray, sample_rate: int = recipe.SAMPLE_RATE,
                         fmax: float | None = None) -> np.ndarray:
    """One clip's ``(T, 140)`` array -> the 457 features of :func:`feature_names` (float64).

    ``sample_rate``/``fmax``: the mel scale the set was made with (the lab's:
    22050 Hz, fmax = sr / 2); they only place the bands for the spectral descriptors.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != recipe.N_FEATURES or x.shape[0] < 1:
        raise ValueError(f"expected a (T, {recipe.N_FEATURES}) array, got shape {x.shape}")
    mel, chroma = x[:, :recipe.N_MELS], x[:, recipe.N_MELS:]
    groups = mel.reshape(len(mel), MEL_GROUPS, -1).mean(axis=2)
    chroma_stats = np.concatenate([chroma.mean(axis=0)[:, None], chroma.std(axis=0)[:, None],
                                   _series_stats(chroma)], axis=1)
    spec = spectral_descriptors(mel, sample_rate, fmax)
    spec_stats = np.stack([spec.mean(axis=0), spec.std(axis=0)], axis=1)
    out = np.concatenate([mel.mean(axis=0), mel.std(axis=0), _series_stats(groups).ravel(),
                          chroma_stats.ravel(), spec_stats.ravel(), [float(len(x))]])
    assert out.shape == (len(feature_names()),)
    return out


# --- audio-domain features -----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def audio_feature_names() -> tuple[str, ...]:
    names = [f"mfcc_{s}_{k:02d}" for s in ("mean", "std") for k in range(1, N_MFCC + 1)]
    return tuple(names + ["zcr_mean", "zcr_std", "rms_mean", "rms_std", "tempo"])


def audio_features(y: np.ndarray, sr: int = recipe.SAMPLE_RATE) -> np.ndarray:
    """Mono audio -> the 45 audio-domain features of :func:`audio_feature_names` (float32)."""
    import librosa

    y = np.asarray(y, np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=N_MFCC, n_fft=recipe.N_FFT,
                                hop_length=recipe.HOP_LENGTH)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=recipe.N_FFT,
                                             hop_length=recipe.HOP_LENGTH)[0]
    rms = librosa.feature.rms(y=y, frame_length=recipe.N_FFT, hop_length=recipe.HOP_LENGTH)[0]
    tempo = librosa.feature.tempo(y=y, sr=sr, hop_length=recipe.HOP_LENGTH)
    out = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1),
                          [zcr.mean(), zcr.std(), rms.mean(), rms.std(), float(np.ravel(tempo)[0])]])
    return out.astype(np.float32)
