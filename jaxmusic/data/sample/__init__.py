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

1. *Genre model* (:data:`GENRES`, :mod:`.genres`): one row per genre string with a
   tempo distribution, drum pattern family (on-beat, four-on-the-floor, syncopated,
   swung, none), swing, syncopation, timing looseness, chord progression style,
   chord-change rate, comping / arpeggio pattern, major-mode probability,
   instrument timbre (partial roll-off, odd-only partials, formant bumps),
   recording chain (spectral tilt, low-pass cut-off, hiss level), distortion,
   dynamics and loudness. Strings that the lab merges (Rock, Psych-Rock,
   Post-Rock; Metal, Punk; Folk, Psych-Folk; Electronic, Chiptune) are close
   but not identical.
2. *Per clip* (:func:`compose`, :mod:`.score`, seeded by ``[seed, group, index]``):
   every genre parameter is drawn around the genre's value, plus a key, a mode, a
   tempo, a loudness and a random "production" EQ curve. From these a score is laid
   out on a beat grid with tempo drift: drum hits (kick/snare/hat, with swing,
   syncopation and timing jitter), chord articulations, a bass line and a
   melody. A beat tracker model (octave errors, off-beat locking, jitter,
   trimming) turns the beat grid into the beat frames of the beat-synchronised
   variant. Emotion targets are noisy functions of the parameters
   (:func:`emotion_function`).
3. *Rendering* (:func:`render`, :mod:`.rendering`): every note is a harmonic series
   mapped through the exact mel filter bank of the lab's recipe (22050 Hz, n_fft
   2048, hop 512, 128 Slaney mels, Hann window), shaped by the timbre; drums are broadband
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
(:mod:`jaxmusic.workers`: forkserver, one BLAS thread per worker) writes them in
any order with byte-identical results.

Modules, in dependency order
----------------------------
``genres`` (parameter tables) -> ``emotion`` (the targets' functions) -> ``tables``
(precomputed spectra) -> ``planning`` (which clips; seed streams) -> ``score``
(:func:`compose`, stage by stage) -> ``rendering`` (mel + chroma, beat sync) ->
``files`` (feature, label and answer files) -> ``generator`` (:func:`generate`).
"""


from jaxmusic.data.sample.emotion import EMOTION_NOISE, emotion_function
from jaxmusic.data.sample.files import FORMAT_VERSION, GENERATOR, GZ_LEVEL
from jaxmusic.data.sample.generator import generate
from jaxmusic.data.sample.genres import GENRE_WEIGHTS, GENRES, SPREAD
from jaxmusic.data.sample.planning import GROUPS, SET_PAIRS, SIZES, ClipSpec, find_clip, plan
from jaxmusic.data.sample.rendering import Clip, beat_sync, render, synthesize
from jaxmusic.data.sample.score import Layer, Score, clip_beats, compose

__all__ = [
    "EMOTION_NOISE", "FORMAT_VERSION", "GENERATOR", "GENRES", "GENRE_WEIGHTS", "GROUPS",
    "GZ_LEVEL", "SET_PAIRS", "SIZES", "SPREAD", "Clip", "ClipSpec", "Layer", "Score",
    "beat_sync", "clip_beats", "compose", "emotion_function", "find_clip", "generate", "plan",
    "render", "synthesize",
]
