"""The emotion model: valence, energy and danceability as noisy functions of a clip's
generative parameters (documented in ``docs/sample_data.md``)."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: float) -> float:
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
    valence = sigmoid(0.9 * m + 0.8 * math.log2(p["tempo"] / 110.0) + 0.2 * b - 0.05)
    energy = sigmoid(0.11 * (p["loud"] + 9.0) + 0.65 * math.log(p["onset_rate"] / 6.0)
                     + 0.025 * (p["dist"] + 20.0))
    reg = math.exp(-p["jitter"] / 20.0) * math.exp(-p["drift"] / 0.015)
    fit = math.exp(-(math.log2(p["tempo"] / 120.0) / 0.35) ** 2)
    pulse = sigmoid((p["perc"] + 9.0) / 3.0)
    dance = sigmoid(1.6 * (reg - 0.55) + 1.3 * (fit - 0.5) + 1.0 * (pulse - 0.5))
    return np.array([valence, energy, dance])


EMOTION_NOISE = 0.13      # sd of the additive noise on each target (before clipping)
