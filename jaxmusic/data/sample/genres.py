"""Genre models: what each of the lab's 20 genre strings sounds like, as numbers.

One parameter row per genre string (:data:`GENRES`), how often each string occurs
(:data:`GENRE_WEIGHTS`), how far a clip strays from its genre (:data:`SPREAD`), and
the musical vocabulary the scores are written in: drum patterns, comping patterns,
scales and chord progressions. Plain data; :mod:`.score` draws a clip from it.
"""

from __future__ import annotations

import numpy as np

from jaxmusic.data import lab

# --- genre models --------------------------------------------------------------------
#
# Fields (per genre string; per clip values are drawn around these, see score.draw_params()):
#   tempo, tempo_sd  musical tempo in BPM and its log-normal spread
#   drums            drum pattern family (see DRUM_PATTERNS); perc: drum level (dB vs chords)
#   kick/snare/hat   relative drum levels (dB); decay: drum decay (frames)
#   swing            delay of off-beat eighths (fraction of an eighth; 0.33 = triplet feel)
#   sync             syncopation: probability per bar of extra off-beat kick/snare hits
#   jitter           human timing jitter (ms); drift: tempo wander (log-period AR(1) sd)
#   prog             chord progression style; chord_beats: beats per chord (choices)
#   comp             comping pattern of the chord instrument (see COMP_STEPS)
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
DRUM_PATTERNS: dict[str, dict[str, np.ndarray]] = {
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
COMP_STEPS: dict[str, tuple[int, ...]] = {
    "pad": (), "quarter": (0, 4, 8, 12), "eighth": _EIGHTHS, "sixteenth": tuple(range(16)),
    "strum": (0, 4, 6, 8, 12, 14), "offbeat": (2, 6, 10, 14), "arp8": _EIGHTHS,
    "arp16": tuple(range(16)), "rubato": (0, 8),
}
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
PROGRESSIONS = {
    ("pop", True): [(0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (0, 3, 0, 4), (5, 3, 0, 4)],
    ("pop", False): [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)],
    ("modal", True): [(0, 0, 3, 3), (0, 6, 0, 6), (0, 1), (0, 3)],
    ("modal", False): [(0, 0, 5, 5), (0, 6, 0, 6), (0, 3), (0, 5, 6, 0)],
    ("jazz", True): [(1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 4)],
    ("jazz", False): [(1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4)],
    ("classical", True): [(0, 3, 4, 0), (0, 5, 1, 4, 0, 3, 4, 0), (0, 4, 5, 2, 3, 0, 3, 4)],
    ("classical", False): [(0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 2, 5, 1, 4, 0, 4)],
}
BLUES_12 = (0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7)   # chord roots in semitones, dominant 7ths
