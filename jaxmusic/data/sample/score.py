"""The score of one clip: its parameters drawn around its genre's, and the music laid
out on a beat grid, in frames (no rendering here).

:func:`compose` runs the stages in a fixed order on the clip's one random stream
(``clip_rng(seed, group, index, COMPOSE)``); each stage draws its numbers in turn, so
the order of the calls below is part of the data format:

1. :func:`draw_params`: tempo, mode, key, loudness, feel, timbre and recording chain;
2. :func:`beat_grid`: beats with tempo drift, swung 16th steps, bar phase;
3. :func:`dynamics`: sections, an intro without drums, crescendo, fade-in;
4. :func:`drum_hits`: the clip's groove, fills, syncopation, timing jitter;
5. :func:`harmony`: the chord progression and its voicing;
6. :func:`chord_layer`, :func:`bass_layer`, :func:`melody_layer`: the articulations;
7. :func:`recording_eq`: tilt, low-pass, high-pass and a random production EQ;
8. :func:`tracked_beats`: what a beat tracker would report (the beat variant's frames);
9. the emotion targets (:mod:`.emotion`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from jaxmusic import recipe
from jaxmusic.data import lab
from jaxmusic.data.sample.emotion import EMOTION_NOISE, emotion_function, sigmoid
from jaxmusic.data.sample.genres import (BLUES_12, COMP_STEPS, DRUM_PATTERNS, GENRES, MAJOR,
                                         MINOR, PROGRESSIONS, SPREAD)
from jaxmusic.data.sample.planning import COMPOSE, clip_rng
from jaxmusic.data.sample.tables import tables

FPS = recipe.FRAMES_PER_SECOND


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
    params: dict              # scalar per-clip parameters (see draw_params)
    beat_times: np.ndarray    # musical beats (fractional frames)
    beat_frames: np.ndarray   # tracked beats (int frames) used for the beat variant
    layers: dict              # name -> Layer
    drums: dict               # name -> (times, velocities)
    gain_db: np.ndarray       # (T,) dynamics of the music
    eq_db: np.ndarray         # (128,) recording chain + production EQ
    emotion_fn: np.ndarray    # (3,) noiseless valence, energy, danceability
    targets: np.ndarray       # (3,) noisy targets in [0, 1]


@dataclasses.dataclass
class Grid:
    """The beat grid of a clip, in (fractional) frames."""

    beat_times: np.ndarray   # (nb,) musical beats
    periods: np.ndarray      # (nb,) beat lengths
    bar_phase: int           # which beat of the bar comes first
    beat_in_bar: np.ndarray  # (nb,) 0..3
    step_t: np.ndarray       # (nb, 4) time of each (swung) 16th step
    step_id: np.ndarray      # (nb, 4) 0..15: the step's place in the bar
    jit: float               # timing jitter (frames, sd)

    @property
    def nb(self) -> int:
        return len(self.beat_times)


@dataclasses.dataclass
class Harmony:
    scale: np.ndarray         # the mode's 7 pitch classes
    chords_pc: list           # chord tones (MIDI numbers around the key) per chord
    chord_of_beat: np.ndarray  # (nb,) index into chords_pc
    voiced: list              # chords_pc placed around the register


def compose(seed: int, group: str, index: int, genre: str) -> Score:
    """Draw the parameters and lay out the score of one clip (cheap, no rendering).

    Seeded by ``np.random.default_rng([seed, group_index, index, 0])`` alone, so
    any clip can be recomputed on its own, in any order or process.
    """
    G = GENRES[genre]
    rng = clip_rng(seed, group, index, COMPOSE)
    T = int(rng.choice([1291, 1292, 1293], p=[0.15, 0.25, 0.6]))
    params, formants = draw_params(G, genre, T, rng)
    grid = beat_grid(params, T, rng)
    gain_db, drums_on = dynamics(G, params, grid, T, rng)
    drums, onset_count = drum_hits(G, params, grid, drums_on, T, rng)
    harm = harmony(G, params, grid, rng)
    timbre = dict(rolloff=params["rolloff"], odd=G["odd"], formants=formants, bright=params["bright"])
    layers = {"chords": chord_layer(G, params, grid, harm, timbre, T, rng)}
    onset_count += 0.5 * len(layers["chords"].times)
    layers["bass"] = bass_layer(G, grid, harm, drums, rng)
    if G["melody"] is not None:
        layers["melody"] = melody_layer(G, params, grid, harm, rng)
        onset_count += 0.3 * float(np.sum(layers["melody"].vel > 0))
    eq = recording_eq(params, rng)
    ttempo, beat_frames = tracked_beats(params, grid, T, rng)
    params.update(tracked_tempo=ttempo, onset_rate=max(onset_count, 1.0) * FPS / T,
                  n_beats=int(len(beat_frames)))
    fn = emotion_function(params)
    targets = np.clip(fn + rng.normal(0, EMOTION_NOISE, len(recipe.TARGETS)), 0.0, 1.0)
    return Score(genre, T, params, grid.beat_times, beat_frames, layers, drums, gain_db, eq, fn,
                 targets)


def clip_beats(seed: int, group: str, index: int, genre: str) -> np.ndarray:
    """The beat frames used for the beat-synchronised variant of a clip."""
    return compose(seed, group, index, genre).beat_frames


# --- 1. parameters ----------------------------------------------------------------------


def _clip(x, lo, hi) -> float:
    return float(min(max(x, lo), hi))


def draw_params(G: dict, genre: str, T: int, rng: np.random.Generator) -> tuple[dict, list]:
    """Per-clip parameters around the genre's (fields as in :mod:`.genres`), and the
    instrument's formants: the genre's, moved, plus two random resonances."""
    sp = SPREAD
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
    return params, formants


# --- 2. beat grid, 3. dynamics ----------------------------------------------------------


def beat_grid(p: dict, T: int, rng: np.random.Generator) -> Grid:
    """Beats with tempo drift (AR(1) on the log period) and swung 16th steps."""
    tempo, drift, swing = p["tempo"], p["drift"], p["swing"]
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
    jit = p["jitter"] / 1000.0 * FPS
    return Grid(beat_times, periods, bar_phase, beat_in_bar, step_t, step_id, jit)


def dynamics(G: dict, p: dict, grid: Grid, T: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """(gain in dB per frame, drums on per beat): sections, an intro without drums,
    crescendo, fade-in."""
    dyn, nb, bar_phase, beat_times = p["dyn"], grid.nb, grid.bar_phase, grid.beat_times
    sec_len = int(rng.choice([16, 32]))                                  # beats per section
    n_sec = nb // sec_len + 2
    comp_db = dyn * math.exp(-max(0.0, p["loud"] + 12.0) / 8.0)          # loud clips are compressed
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
    return gain_db, drums_on


# --- 4. drums -----------------------------------------------------------------------------


def drum_hits(G: dict, p: dict, grid: Grid, drums_on: np.ndarray, T: int,
              rng: np.random.Generator) -> tuple[dict, float]:
    """``({kick|snare|hat: (times, velocities)}, audible onsets)``; a clip whose drums
    never play gets ``p["perc"] = -60``."""
    perc, sync, step_id, step_t = p["perc"], p["sync"], grid.step_id, grid.step_t
    pat = DRUM_PATTERNS[G["drums"]]
    drums = {}
    onset_count = 0.0
    audible = sigmoid((perc + 15.0) / 3.0)                                # drums heard at all?
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
        t = step_t[hits] + rng.normal(0, grid.jit, hits.sum())
        accent = np.where(step_id[hits] % 4 == 0, 1.0, 0.6)
        v = accent * np.exp(rng.normal(0, 0.25, hits.sum()))
        inside = (t > -3) & (t < T + 3)
        drums[name] = (t[inside], v[inside])
        onset_count += float(np.sum(v[inside] > 0.3)) * audible
    if not any(len(t) for t, _ in drums.values()):
        p["perc"] = -60.0
    return drums, onset_count


# --- 5. harmony ---------------------------------------------------------------------------


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


def harmony(G: dict, p: dict, grid: Grid, rng: np.random.Generator) -> Harmony:
    """The progression (12-bar blues, or one of the style's progressions in the mode)."""
    key, major = p["key"], p["major"]
    scale = MAJOR if major else MINOR
    style = G["prog"]
    if style == "blues":
        roots = [key + r for r in BLUES_12]
        chords_pc = [tuple(r + i for i in (0, 4, 7, 10)) for r in roots]
    else:
        opts = PROGRESSIONS[(style, major)]
        prog = opts[int(rng.integers(len(opts)))]
        raise_v = style in ("classical", "jazz") and not major
        chords_pc = [_chord(d, scale, key, rng.random() < G["p7"], raise_v) for d in prog]
    chord_of_beat = ((np.arange(grid.nb) + grid.bar_phase) // p["chord_beats"]) % len(chords_pc)
    voiced = [_voice(c, p["register"]) for c in chords_pc]
    return Harmony(scale, chords_pc, chord_of_beat, voiced)


# --- 6. the instruments -----------------------------------------------------------------


def chord_layer(G: dict, p: dict, grid: Grid, harm: Harmony, timbre: dict, T: int,
                rng: np.random.Generator) -> Layer:
    """The chord instrument: struck on chord changes and on the comping pattern's
    steps (one chord tone per step for arpeggios; free extra strokes for rubato)."""
    nb, step_id, step_t, chord_of_beat = grid.nb, grid.step_id, grid.step_t, harm.chord_of_beat
    comp = G["comp"]
    steps = set(COMP_STEPS[comp])
    art_t, art_u, art_v = [], [], []
    arp = comp.startswith("arp")
    notes: list = list(harm.voiced)
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
                tones = harm.voiced[c]
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
    art_t = list(np.asarray(art_t) + rng.normal(0, grid.jit, len(art_t)))
    art_v = list(np.asarray(art_v) * np.exp(rng.normal(0, 0.2, len(art_v))))
    if comp == "rubato":                                # free extra articulations
        k = int(rng.poisson(nb * 0.5))
        art_t += list(rng.uniform(0, T, k))
        art_u += [int(chord_of_beat[i]) for i in np.clip(
            np.searchsorted(grid.beat_times, art_t[-k:]) - 1, 0, nb - 1)] if k else []
        art_v += list(0.6 * np.exp(rng.normal(0, 0.3, k)))
    order = np.argsort(art_t, kind="stable")
    return Layer(np.asarray(art_t)[order], np.asarray(art_u, int)[order],
                 np.asarray(art_v)[order], notes, p["sustain"], p["hdecay"], 0.0, timbre)


def bass_layer(G: dict, grid: Grid, harm: Harmony, drums: dict, rng: np.random.Generator) -> Layer:
    """The bass: the chord root per beat, on changes, on eighths, with the kick, or walking."""
    bass_pat = G["bass"]
    step_t, chords_pc, chord_of_beat = grid.step_t, harm.chords_pc, harm.chord_of_beat
    bt, bu, bnotes, bidx = [], [], [], {}
    bass_center = 38.0 + rng.normal(0, 2)
    kick_t = drums.get("kick", (np.zeros(0), None))[0]
    for b in range(grid.nb):
        c = int(chord_of_beat[b])
        root = chords_pc[c][0]
        change = b == 0 or chord_of_beat[b - 1] != c
        if bass_pat == "walk":
            pcs = [root, chords_pc[c][1], chords_pc[c][2], root + 2][int(grid.beat_in_bar[b])]
            times = [step_t[b, 0]]
        elif bass_pat == "change":
            if not change:
                continue
            pcs, times = root, [step_t[b, 0]]
        elif bass_pat == "eighth":
            pcs, times = root, [step_t[b, 0], step_t[b, 2]]
        elif bass_pat == "kick":
            in_beat = kick_t[(kick_t >= step_t[b, 0] - 1)
                             & (kick_t < step_t[b, 0] + grid.periods[b] - 1)]
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
    bt = np.asarray(bt) + rng.normal(0, grid.jit * 0.5, len(bt))
    bv = np.exp(rng.normal(0, 0.15, len(bt)))
    order = np.argsort(bt, kind="stable")
    return Layer(np.asarray(bt)[order], np.asarray(bu, int)[order], np.asarray(bv)[order],
                 bnotes, 0.6, 12.0, -3.0 + rng.normal(0, 2),
                 dict(rolloff=2.2, odd=False, formants=[], bright=800.0))


def melody_layer(G: dict, p: dict, grid: Grid, harm: Harmony, rng: np.random.Generator) -> Layer:
    """A random walk on the scale, snapped to chord tones on strong beats, with rests."""
    nb, step_t, chords_pc = grid.nb, grid.step_t, harm.chords_pc
    key, scale = p["key"], harm.scale
    div = int(G["mel_div"])
    mt, mu, mv, mnotes, midx = [], [], [], [], {}
    deg = int(rng.integers(7))
    center = p["register"] + 12
    rest = rng.random((nb, div)) < 0.25
    moves = np.array([-2, -1, -1, 0, 1, 1, 2])[rng.integers(7, size=(nb, div))]
    snap = rng.random(nb) < 0.6
    for b in range(nb):
        c = int(harm.chord_of_beat[b])
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
    mt = np.asarray(mt) + rng.normal(0, grid.jit, len(mt))
    mv = np.asarray(mv) * np.exp(rng.normal(0, 0.25, len(mv)))
    order = np.argsort(mt, kind="stable")
    mform = [(G["mel_formant"] * 2 ** rng.normal(0, 0.2), 6.0, 0.5)] if G["mel_formant"] else []
    return Layer(np.asarray(mt)[order], np.asarray(mu, int)[order],
                 np.asarray(mv)[order], mnotes, 0.7, 15.0,
                 float(G["melody"] + rng.normal(0, 2)),
                 dict(rolloff=1.2 if not G["odd"] else 1.0, odd=G["odd"],
                      formants=mform, bright=p["bright"] * 1.3))


# --- 7. recording chain, 8. the beat tracker ------------------------------------------------


def recording_eq(p: dict, rng: np.random.Generator) -> np.ndarray:
    """dB per mel band: spectral tilt, low-pass at the cut-off, a 35 Hz high-pass and a
    random production EQ (four cosines over the bands)."""
    fc = tables()["mel_fc"]
    eq = (p["tilt"] * np.log2(np.maximum(fc, 80.0) / 1000.0)
          - 24.0 * np.maximum(0.0, np.log2(fc / p["cutoff"]))
          - 24.0 * np.maximum(0.0, np.log2(35.0 / fc)))
    m = np.arange(lab.N_MEL) / (lab.N_MEL - 1)
    for k in range(1, 5):
        amp = rng.normal(0, SPREAD["eq_db"] / k ** 0.5)
        eq = eq + amp * np.cos(np.pi * k * m + rng.uniform(0, 2 * np.pi))
    return eq


def tracked_beats(p: dict, grid: Grid, T: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """(tracked tempo, beat frames): octave errors (double time below ~92 BPM, half
    time above 175), locking onto the off-beats, jitter (more with quiet drums) and
    trimmed leading/trailing beats."""
    tempo, beat_times = p["tempo"], grid.beat_times
    ttempo = tempo
    track_t = beat_times.copy()
    u = rng.random(3)
    if tempo < 92 and u[0] < 0.85:                        # octave error: double time
        ttempo = 2 * tempo
        track_t = np.sort(np.concatenate([beat_times, beat_times + grid.periods / 2]))
    elif tempo > 175 and u[0] < 0.2:                      # half time
        ttempo = tempo / 2
        track_t = beat_times[::2]
    pulse = sigmoid((p["perc"] + 9.0) / 3.0)
    if u[1] < 0.08 + 0.25 * p["sync"]:                    # locked onto the off-beats
        track_t = track_t + 0.5 * 60.0 / ttempo * FPS
    track_t = track_t + rng.normal(0, 0.5 + 2.5 * (1 - pulse) + grid.jit * 0.5, len(track_t))
    lo, hi = rng.uniform(2, 40), T - rng.uniform(2, 40)   # leading/trailing beats are trimmed
    beat_frames = np.unique(np.round(track_t[(track_t >= lo) & (track_t <= hi)]).astype(np.int64))
    return ttempo, beat_frames
