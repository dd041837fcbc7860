"""Batched audio frontend in JAX: audio ``[B, samples]`` -> lab features ``[B, T, 140]``.

The same numbers as the course recipe's librosa calls, computed under ``jit``:

* STFT: centred frames (``n_fft // 2`` zeros each side, librosa's default
  ``pad_mode="constant"``), periodic Hann window, ``|rfft|**2``.
* mel: ``librosa.filters.mel`` (Slaney, 128 bands) as a constant, then
  :func:`power_to_db` with ``ref`` = the clip's maximum, ``amin`` 1e-10,
  ``top_db`` 80, over the clip's valid frames only.
* chroma: ``librosa.filters.chroma`` (``tuning=0``) on the power spectrum,
  each frame divided by its maximum, as ``librosa.feature.chroma_stft(...,
  tuning=0.0)``. The lab files use ``chroma_cqt``; that transform is not
  reimplemented here (see ``benchmarks/frontend_results.md`` for how close the
  STFT chroma is to it).
* :func:`beat_sync`: ``librosa.util.sync(..., aggregate=np.median)`` for given
  beat frames, with a fixed maximum number of beats so it compiles once.

Rows ``0:128`` of the output are mel dB, rows ``128:140`` chroma, time-major,
like :class:`jaxmusic.data.lab.Record`. Frames past a clip's length are zero.

Two STFT implementations give the same numbers (to float32 rounding):

* ``"blocks"`` (CPU default when ``n_fft == 4 * hop_length`` and ``n_fft / 2``
  is a power of two): frames are never materialised. The real frame is packed
  into ``n_fft / 2`` complex points whose first radix-4 stage reads the four
  hop blocks under the frame directly; the FFT is radix-4 stages on a
  frames-minor layout, chunk by chunk (``chunk_frames`` frames per step) so the
  working set stays in cache, and the mel bands are a few block-sparse
  matmuls. XLA's own CPU FFT is about half as fast for these sizes.
* ``"xla"``: framing by gather and ``jnp.fft.rfft`` (the right choice on GPU/TPU).

Entry points: :func:`frontend` (pure, traceable), :func:`frontend_jit`,
:class:`Frontend` (a parameter-free Flax layer), :func:`data_parallel` (the batch
split over devices, e.g. one per CPU core), :func:`beat_sync`. Accuracy and speed
against librosa: ``benchmarks/frontend_results.md``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmusic import recipe

N_MEL = recipe.N_MELS
N_CHROMA = recipe.N_CHROMA


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """The recipe's parameters (defaults: the lab's) and how to compute them."""

    sample_rate: int = recipe.SAMPLE_RATE
    n_fft: int = recipe.N_FFT
    hop_length: int = recipe.HOP_LENGTH
    n_mels: int = N_MEL         # 0: no mel rows (a chroma-only frontend)
    n_chroma: int = N_CHROMA    # 0: no chroma rows (a mel-only frontend)
    amin: float = 1e-10
    top_db: float | None = recipe.TOP_DB
    tuning: float = 0.0
    fmax: float | None = None   # mel cut-off (Hz); None: sample_rate / 2
    stft: str = "auto"          # "auto" | "blocks" | "xla"
    chunk_frames: int = 128     # frames per step of the "blocks" STFT (working set ~1 MB)
    mel_group: int = 16         # mel bands per block-sparse matmul

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_features(self) -> int:
        return self.n_mels + self.n_chroma

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT of ``n_samples`` (librosa's count)."""
        return 1 + n_samples // self.hop_length

    def resolved_stft(self) -> str:
        if self.stft != "auto":
            if self.stft == "blocks" and not _blocks_ok(self):
                raise ValueError("stft='blocks' needs n_fft == 4 * hop_length and n_fft / 2 "
                                 f"a power of two (got n_fft={self.n_fft}, "
                                 f"hop_length={self.hop_length})")
            if self.stft not in ("blocks", "xla"):
                raise ValueError(f"unknown stft implementation {self.stft!r}")
            return self.stft
        if _blocks_ok(self) and jax.default_backend() == "cpu":
            return "blocks"
        return "xla"


LAB = FrontendConfig()


def _blocks_ok(cfg: FrontendConfig) -> bool:
    half = cfg.n_fft // 2
    return (cfg.n_fft == 4 * cfg.hop_length and cfg.hop_length % 2 == 0
            and half >= 4 and half & (half - 1) == 0)


# --- constants (numpy, built once per config) -----------------------------------

@functools.lru_cache(maxsize=None)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as ``scipy.signal.get_window("hann", n_fft)``."""
    n = np.arange(n_fft)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int = recipe.SAMPLE_RATE, n_fft: int = recipe.N_FFT,
                   n_mels: int = N_MEL, fmax: float | None = None) -> np.ndarray:
    """``librosa.filters.mel`` (Slaney scale and norm): ``(n_mels, 1 + n_fft // 2)``;
    ``fmax`` None: half the sample rate (librosa's default)."""
    import librosa
    if n_mels == 0:
        return np.zeros((0, 1 + n_fft // 2), np.float32)
    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
    fb = np.asarray(fb, dtype=np.float32)
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=None)
def chroma_filterbank(sample_rate: int = recipe.SAMPLE_RATE, n_fft: int = recipe.N_FFT, n_chroma: int = N_CHROMA,
                      tuning: float = 0.0) -> np.ndarray:
    """``librosa.filters.chroma``: ``(n_chroma, 1 + n_fft // 2)``."""
    import librosa
    if n_chroma == 0:
        return np.zeros((0, 1 + n_fft // 2), np.float32)
    fb = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    fb = np.asarray(fb, dtype=np.float32)
    fb.setflags(write=False)
    return fb


def _filterbanks(cfg: FrontendConfig) -> tuple[np.ndarray, np.ndarray]:
    return (mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmax),
            chroma_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_chroma, cfg.tuning))


@functools.lru_cache(maxsize=None)
def _mel_blocks(cfg: FrontendConfig) -> tuple[tuple[int, int, np.ndarray], ...]:
    """The mel matrix as row groups, each with only the bins it touches."""
    fb, _ = _filterbanks(cfg)
    out = []
    for g0 in range(0, fb.shape[0], cfg.mel_group):
        rows = fb[g0:g0 + cfg.mel_group]
        nz = np.flatnonzero(rows.any(axis=0))
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (1, 2)
        out.append((lo, hi, np.ascontiguousarray(rows[:, lo:hi])))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _fft_plan(half: int) -> tuple[tuple[int, int, int, np.ndarray], ...]:
    """Stages ``(radix, K, S, twiddles [radix, K, 1, 1])`` of a ``half``-point
    complex FFT on the layout ``[K, S, C]`` (K transformed, S sub-sequences)."""
    stages = []
    k_, s_ = 1, half
    while k_ < half:
        r = 4 if s_ % 4 == 0 else 2
        q = np.arange(r)[:, None]
        k = np.arange(k_)[None, :]
        tw = np.exp(-2j * np.pi * q * k / (r * k_)).astype(np.complex64)[..., None, None]
        stages.append((r, k_, s_, tw))
        k_, s_ = k_ * r, s_ // r
    return tuple(stages)


def _butterfly(t: Sequence[jax.Array]) -> list[jax.Array]:
    """DFT of size 2 or 4 over a list of arrays (twiddles already applied)."""
    if len(t) == 2:
        return [t[0] + t[1], t[0] - t[1]]
    a0, a1, a2, a3 = t
    s02, d02, s13, d13 = a0 + a2, a0 - a2, a1 + a3, a1 - a3
    md13 = lax.complex(jnp.imag(d13), -jnp.real(d13))          # -1j * d13
    return [s02 + s13, d02 + md13, s02 - s13, d02 - md13]


def _butterfly_first(re: Sequence[jax.Array], im: Sequence[jax.Array]) -> list[jax.Array]:
    """Radix-4 DFT of four complex inputs given as real and imaginary parts."""
    sr02, dr02, sr13, dr13 = re[0] + re[2], re[0] - re[2], re[1] + re[3], re[1] - re[3]
    si02, di02, si13, di13 = im[0] + im[2], im[0] - im[2], im[1] + im[3], im[1] - im[3]
    return [lax.complex(sr02 + sr13, si02 + si13),
            lax.complex(dr02 + di13, di02 - dr13),
            lax.complex(sr02 - sr13, si02 - si13),
            lax.complex(dr02 - di13, di02 + dr13)]


# --- STFT power ------------------------------------------------------------------

def _mask_audio(audio: jax.Array, lengths: jax.Array | None) -> jax.Array:
    audio = jnp.asarray(audio, jnp.float32)
    if lengths is None:
        return audio
    idx = jnp.arange(audio.shape[-1])
    return jnp.where(idx[None, :] < jnp.asarray(lengths)[:, None], audio, 0.0)


def frame_lengths(lengths: jax.Array | None, n_samples: int, batch: int,
                  config: FrontendConfig = LAB) -> jax.Array:
    """Valid frames per clip: ``1 + length // hop`` (librosa's count)."""
    if lengths is None:
        return jnp.full((batch,), config.n_frames(n_samples), jnp.int32)
    return (1 + jnp.asarray(lengths, jnp.int32) // config.hop_length).astype(jnp.int32)


def stft_power(audio: jax.Array, config: FrontendConfig = LAB) -> jax.Array:
    """``|STFT|**2`` of ``[B, samples]`` audio: ``[B, T, 1 + n_fft // 2]`` float32.

    Centred, zero padded, periodic Hann: ``np.abs(librosa.stft(y, n_fft,
    hop_length)) ** 2`` transposed. Uses ``jnp.fft.rfft`` (reference path).
    """
    audio = jnp.asarray(audio, jnp.float32)
    n_fft, hop = config.n_fft, config.hop_length
    n_frames = config.n_frames(audio.shape[-1])
    padded = jnp.pad(audio, ((0, 0), (n_fft // 2, n_fft // 2)))
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = padded[:, idx] * hann_window(n_fft)
    spec = jnp.fft.rfft(frames, axis=-1)
    return spec.real ** 2 + spec.imag ** 2


def _raw_features_xla(audio: jax.Array, cfg: FrontendConfig) -> jax.Array:
    power = stft_power(audio, cfg)
    mel_fb, chroma_fb = _filterbanks(cfg)
    fb = np.concatenate([mel_fb, chroma_fb], axis=0).T
    # Full float32 on GPU/TPU (their default may be TF32/bf16 passes); on CPU the
    # default already is, and HIGHEST would take the slower matmul path.
    precision = None if jax.default_backend() == "cpu" else lax.Precision.HIGHEST
    return jnp.einsum("btf,fm->btm", power, fb, precision=precision)


def _raw_features_blocks(audio: jax.Array, cfg: FrontendConfig) -> jax.Array:
    """Mel power and raw chroma ``[B, T, n_mels + n_chroma]`` without materialising
    frames; see the module docstring."""
    batch, n_samples = audio.shape
    n_fft, hop = cfg.n_fft, cfg.hop_length
    half = n_fft // 2
    n_frames = cfg.n_frames(n_samples)
    # Equal chunks of at most chunk_frames (a multiple of 8) with little padding.
    n_chunks = -(-n_frames // cfg.chunk_frames)
    c = -(-(-(-n_frames // n_chunks)) // 8) * 8
    n_blocks = n_chunks * c + 3                 # 4 hop blocks per frame
    mel_blocks = _mel_blocks(cfg)
    _, chroma_fb = _filterbanks(cfg)
    plan = _fft_plan(half)
    # Window per hop block and per (even, odd) sample: [4, hop/2, 2, 1].
    window = hann_window(n_fft).reshape(4, hop // 2, 2)[..., None]
    # Post-processing of the packed real FFT (bins 1 .. half-1).
    w_mid = np.exp(-2j * np.pi * np.arange(1, half) / n_fft).astype(np.complex64)[:, None]
    chroma_mid = np.ascontiguousarray(chroma_fb[:, 1:half])
    chroma_dc, chroma_nyq = chroma_fb[:, :1], chroma_fb[:, half:half + 1]

    padded = jnp.pad(audio, ((0, 0), (n_fft // 2, n_blocks * hop - n_samples - n_fft // 2)))
    blocks = padded.reshape(batch * n_blocks, hop)

    def chunk(i):
        clip, part = i // n_chunks, i % n_chunks
        blk = lax.dynamic_slice_in_dim(blocks, clip * n_blocks + part * c, c + 3, axis=0)
        # [hop/2, 2, c + 3]: (even, odd) sample pairs of each hop block, blocks minor.
        # Transposed once here (left to fusion, XLA re-transposes per use).
        blk = lax.optimization_barrier(blk.reshape(c + 3, hop // 2, 2).transpose(1, 2, 0))
        # First radix-4 stage: its four inputs are the frame's four hop blocks,
        # windowed and packed as complex (even + 1j * odd samples). Its twiddles
        # are 1, so it is real arithmetic.
        re, im = [], []
        for j in range(4):
            s = blk[:, :, j:j + c] * window[j]
            re.append(s[:, 0])
            im.append(s[:, 1])
        x = jnp.concatenate([q[None] for q in _butterfly_first(re, im)], axis=0)  # [4, half/4, c]
        for radix, k_, s_, tw in plan[1:]:
            sub = s_ // radix
            parts = [x[:, j * sub:(j + 1) * sub] * tw[j] if j else x[:, :sub]
                     for j in range(radix)]
            x = jnp.concatenate(_butterfly(parts), axis=0)
        # Materialise the spectrum: fused into the unpacking below, XLA would
        # re-evaluate the last stage's concatenation per output element.
        z = lax.optimization_barrier(x.reshape(half, c))
        # Unpack the real FFT: X[k] = E[k] + W^k O[k], E/O from Z[k], conj Z[half-k].
        a = z[1:]
        rc = jnp.conj(a[::-1])
        spec = 0.5 * (a + rc) + w_mid * (np.complex64(-0.5j) * (a - rc))
        power = spec.real ** 2 + spec.imag ** 2                    # bins 1 .. half-1
        p_dc = (z[0].real + z[0].imag) ** 2
        p_nyq = (z[0].real - z[0].imag) ** 2
        rows = []
        for lo, hi, weights in mel_blocks:
            # Slaney mel filters are zero at DC and Nyquist: bins lo..hi-1 are 1..half-1.
            rows.append(jnp.dot(weights, power[lo - 1:hi - 1]))
        if cfg.n_chroma:
            rows.append(jnp.dot(chroma_mid, power)
                        + chroma_dc * p_dc[None] + chroma_nyq * p_nyq[None])
        return jnp.concatenate(rows, axis=0)                       # [F, c]

    out = lax.map(chunk, jnp.arange(batch * n_chunks, dtype=jnp.int32))
    out = out.reshape(batch, n_chunks, cfg.n_features, c).transpose(0, 1, 3, 2)
    return out.reshape(batch, n_chunks * c, cfg.n_features)[:, :n_frames]


def _check_blocks_filterbank(cfg: FrontendConfig) -> None:
    mel_fb, _ = _filterbanks(cfg)
    half = cfg.n_fft // 2
    if np.any(mel_fb[:, 0]) or np.any(mel_fb[:, half]):
        raise ValueError("stft='blocks' assumes mel filters vanish at DC and Nyquist; "
                         "use stft='xla'")


# --- dB, chroma normalisation, the whole frontend ----------------------------------

def power_to_db(power: jax.Array, frame_mask: jax.Array | None = None, *,
                amin: float = 1e-10, top_db: float | None = 80.0) -> jax.Array:
    """``librosa.power_to_db(S, ref=np.max, amin, top_db)`` per clip.

    ``power``: ``[B, T, F]``; ``ref`` and the ``top_db`` floor use the valid
    frames of each clip (``frame_mask`` ``[B, T]``) only.
    """
    if frame_mask is None:
        frame_mask = jnp.ones(power.shape[:2], bool)
    valid = frame_mask[..., None]
    ref = jnp.maximum(amin, jnp.max(jnp.where(valid, power, 0.0), axis=(1, 2), keepdims=True))
    clamped = jnp.maximum(amin, power)
    log_spec = 10.0 * jnp.log10(clamped) - 10.0 * jnp.log10(ref)
    # The reference bin (and all of a silent clip) is exactly 0 dB, as in librosa;
    # XLA may round the two log10 calls differently.
    log_spec = jnp.where(clamped == ref, 0.0, log_spec)
    if top_db is not None:
        top = jnp.max(jnp.where(valid, log_spec, -jnp.inf), axis=(1, 2), keepdims=True)
        log_spec = jnp.maximum(log_spec, top - top_db)
    return log_spec


def normalize_chroma(chroma: jax.Array) -> jax.Array:
    """Each frame divided by its maximum (``librosa.util.normalize(norm=inf)``);
    frames below the float32 ``tiny`` are left as they are."""
    peak = jnp.max(jnp.abs(chroma), axis=-1, keepdims=True)
    peak = jnp.where(peak < np.finfo(np.float32).tiny, 1.0, peak)
    return chroma / peak


def frontend(audio: jax.Array, lengths: jax.Array | None = None,
             config: FrontendConfig = LAB) -> tuple[jax.Array, jax.Array]:
    """Audio ``[B, samples]`` (mono, ``config.sample_rate``) -> ``(features [B, T, 140],
    frame_lengths [B])``, ``T = 1 + samples // hop``.

    ``lengths`` (samples per clip) marks zero padding at the end of each row:
    each clip is computed as if it were alone (its frames past
    ``1 + length // hop`` are zero, ``ref=max`` and ``top_db`` use its own frames).
    Pure and traceable: wrap in ``jax.jit`` (see :func:`frontend_jit`), ``vmap``
    or use it inside a model (see :class:`Frontend`).
    """
    audio = jnp.asarray(audio, jnp.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be [batch, samples], got shape {audio.shape}")
    if config.n_features == 0:
        raise ValueError("the frontend needs mel rows, chroma rows or both")
    batch, n_samples = audio.shape
    audio = _mask_audio(audio, lengths)
    impl = config.resolved_stft()
    if impl == "blocks":
        _check_blocks_filterbank(config)
        raw = _raw_features_blocks(audio, config)
    else:
        raw = _raw_features_xla(audio, config)
    n_frames = raw.shape[1]
    flen = frame_lengths(lengths, n_samples, batch, config)
    mask = jnp.arange(n_frames)[None, :] < flen[:, None]
    parts = []
    if config.n_mels:
        parts.append(power_to_db(raw[..., :config.n_mels], mask, amin=config.amin,
                                 top_db=config.top_db))
    if config.n_chroma:
        parts.append(normalize_chroma(raw[..., config.n_mels:]))
    feats = jnp.concatenate(parts, axis=-1)
    return jnp.where(mask[..., None], feats, 0.0), flen


frontend_jit = jax.jit(frontend, static_argnames=("config",))


# --- the musicnn taggers' input ---------------------------------------------------------

MUSICNN = FrontendConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, n_chroma=0, top_db=None)
"""The ``musicnn`` package's recipe: 16 kHz mono, 96 Slaney mel bands, n_fft 512, hop 256."""


def musicnn_input(audio: jax.Array, lengths: jax.Array | None = None,
                  config: FrontendConfig = MUSICNN) -> tuple[jax.Array, jax.Array]:
    """Audio ``[B, samples]`` at 16 kHz -> ``(log10(10000 * mel + 1) [B, T, 96], frame_lengths [B])``.

    The input of :mod:`jaxmusic.models.musicnn`: ``librosa.feature.melspectrogram(y,
    sr=16000, hop_length=256, n_fft=512, n_mels=96)`` (centred, zero padded, power 2)
    transposed, then ``log10(10000 x + 1)``. Frames past a clip's length are zero
    (which is also what silence gives). The package's own extractor rounds the mel
    power to float16 before the logarithm (and so overflows to inf where the power
    exceeds 6.55); this keeps float32 throughout.
    """
    audio = jnp.asarray(audio, jnp.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be [batch, samples], got shape {audio.shape}")
    if config.n_chroma or not config.n_mels:
        raise ValueError("the musicnn input is mel bands only (n_chroma=0, n_mels>0)")
    batch, n_samples = audio.shape
    raw = _raw_features_xla(_mask_audio(audio, lengths), config)
    flen = frame_lengths(lengths, n_samples, batch, config)
    mask = jnp.arange(raw.shape[1])[None, :] < flen[:, None]
    return jnp.where(mask[..., None], jnp.log10(10000.0 * raw + 1.0), 0.0), flen


musicnn_input_jit = jax.jit(musicnn_input, static_argnames=("config",))


# --- beat-synchronous pooling ---------------------------------------------------------

def beat_sync(features: jax.Array, frame_lengths: jax.Array, beat_frames: jax.Array,
              n_beats: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``librosa.util.sync(features.T, beats, aggregate=np.median)`` for a batch.

    ``features [B, T, F]`` (valid up to ``frame_lengths [B]``); ``beat_frames
    [B, M]`` int with the first ``n_beats [B]`` entries used (any order,
    duplicates allowed, clipped to ``[0, length]``). Segment boundaries are the
    beats plus ``0`` and the clip length (librosa's ``pad=True``), so a clip
    gets at most ``M + 1`` segments; like librosa, a clip with no beats at all
    gets none. Returns ``(pooled [B, M + 1, F], n_segments [B])``; segments
    past ``n_segments`` are zero. Medians of even counts are the mean of the
    two middle values, as ``np.median``: the result equals librosa's exactly.
    """
    features = jnp.asarray(features)
    b, t, f = features.shape
    m = beat_frames.shape[1]
    frame_lengths = jnp.asarray(frame_lengths, jnp.int32)
    valid_beat = jnp.arange(m)[None, :] < jnp.asarray(n_beats)[:, None]
    beats = jnp.clip(jnp.asarray(beat_frames, jnp.int32), 0, frame_lengths[:, None])
    # A beat at the clip's end (or past it) adds no segment; send unused ones there too.
    beats = jnp.where(valid_beat, beats, frame_lengths[:, None])

    def one(feat, length, beat, count):
        frames = jnp.arange(t)
        starts = jnp.zeros((t + 1,), jnp.int32).at[beat].set(1)[:t].at[0].set(1)
        seg = jnp.cumsum(starts) - 1                       # segment of each frame
        inside = frames < length
        seg = jnp.where(inside, seg, m + 1)                # padding frames sort last
        n_seg = jnp.max(jnp.where(inside, seg, -1)) + 1
        n_seg = jnp.where(count > 0, n_seg, 0)              # librosa: no beats, no segments
        keys = jnp.broadcast_to(seg[:, None], (t, f))
        _, ordered = lax.sort((keys, feat), dimension=0, num_keys=2)
        counts = jnp.zeros((m + 2,), jnp.int32).at[seg].add(1)[:m + 1]
        first = jnp.cumsum(counts) - counts
        lo = first + (counts - 1) // 2
        hi = first + counts // 2
        lo_v = jnp.take(ordered, jnp.clip(lo, 0, t - 1), axis=0)
        hi_v = jnp.take(ordered, jnp.clip(hi, 0, t - 1), axis=0)
        med = (lo_v + hi_v) / 2
        used = jnp.arange(m + 1) < n_seg
        return jnp.where(used[:, None], med, 0).astype(feat.dtype), n_seg.astype(jnp.int32)

    return jax.vmap(one)(features, frame_lengths, beats, jnp.asarray(n_beats, jnp.int32))


beat_sync_jit = jax.jit(beat_sync)


def pad_beats(beat_frames: Sequence[np.ndarray], max_beats: int) -> tuple[np.ndarray, np.ndarray]:
    """Host helper: ragged beat-frame lists -> ``([B, max_beats] int32, n_beats [B])``."""
    out = np.zeros((len(beat_frames), max_beats), np.int32)
    counts = np.zeros((len(beat_frames),), np.int32)
    for i, beats in enumerate(beat_frames):
        beats = np.asarray(beats, np.int64).ravel()
        if beats.size > max_beats:
            raise ValueError(f"clip {i} has {beats.size} beats, more than max_beats={max_beats}")
        out[i, :beats.size] = beats
        counts[i] = beats.size
    return out, counts


# --- Flax module ---------------------------------------------------------------------

try:
    import flax.linen as nn
except ImportError:  # pragma: no cover - flax is a dependency, keep the functions usable
    nn = None

if nn is not None:
    class Frontend(nn.Module):
        """Parameter-free first layer: audio ``[B, samples]`` -> ``(features [B, T, F],
        frame_lengths [B])``; ``view`` picks ``mel`` (128), ``chroma`` (12) or ``fused`` (140)."""

        config: FrontendConfig = LAB
        view: str = "fused"

        @nn.compact
        def __call__(self, audio, lengths=None):
            if self.view not in ("mel", "chroma", "fused"):
                raise ValueError(f"unknown view {self.view!r} (mel, chroma, fused)")
            feats, flen = frontend(audio, lengths, self.config)
            if self.view == "mel":
                feats = feats[..., :self.config.n_mels]
            elif self.view == "chroma":
                feats = feats[..., self.config.n_mels:]
            return feats, flen


def data_parallel(config: FrontendConfig = LAB, devices: Sequence[jax.Device] | None = None):
    """:func:`frontend` with the batch split over ``devices`` (default: all), jitted.

    XLA runs one device's chunk loop on one thread; on a CPU exposed as several
    devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) this uses N
    cores. The batch must divide by the number of devices. Returns
    ``f(audio [B, samples], lengths [B]) -> (features, frame_lengths)``.
    """
    devices = list(jax.devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    spec = jax.sharding.PartitionSpec("data")

    def local(audio, lengths):
        return frontend(audio, lengths, config)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec),
                                 out_specs=(spec, spec)))
