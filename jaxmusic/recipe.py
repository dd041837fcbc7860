"""The course's feature recipe, written once.

The lab's spectrograms were made with librosa at 22050 Hz mono: a mel spectrogram
(n_fft 2048, hop 512, 128 bands, ``power_to_db(ref=max)``) stacked over a 12-bin
chromagram, 140 rows in all. Every module that makes, reads or imitates those
arrays (the audio feature extractor, the JAX frontend, the dataset reader, the
sample generator, the benchmarks) takes the numbers from here.
"""

SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
N_CHROMA = 12
N_FEATURES = N_MELS + N_CHROMA
TOP_DB = 80.0
CLIP_SECONDS = 30.0
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH   # 43.07

# Regression targets of the multitask set, in the label file's column order.
TARGETS: tuple[str, ...] = ("valence", "energy", "danceability")

# The musicnn taggers' input recipe (jaxmusic.frontend.MUSICNN, `features --recipe musicnn`).
MUSICNN_SAMPLE_RATE = 16000
MUSICNN_N_FFT = 512
MUSICNN_HOP_LENGTH = 256
MUSICNN_BANDS = 96
