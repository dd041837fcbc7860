"""Audio collections -> the course lab's dataset layout, with the course's librosa recipe.

This is the reference extractor: it makes feature files the way the lab's were
made (see REFERENCE section 1), one clip at a time on the CPU:

* ``librosa.load``-equivalent reading at 22050 Hz mono (any rate, any channel
  count; soundfile decodes, soxr_hq resamples, channels are averaged);
* mel: ``melspectrogram(n_fft=2048, hop_length=512, n_mels=128, power=2.0)``
  then ``power_to_db(ref=np.max)``; chroma: ``chroma_cqt(hop_length=512)``;
  fused: mel rows over chroma rows, written ``(140, T)`` by
  :func:`jaxmusic.data.lab.save_features`;
* beat-synchronised twin: ``effects.hpss``, ``beat.beat_track`` on the
  percussive part, ``util.sync(fused, beats, aggregate=np.median)``. With no
  beats (silence, a drone) beats fall on a fixed 120 BPM grid and the clip is
  flagged ``beat_grid_fallback``.

Collections (``--layout``):

``genre-folders``
    ``<input>/<genre>/<...>/<file>.wav`` (GTZAN: ``blues/blues.00000.wav``).
``clip-table``
    a CSV ``file,start,end,label[,group][,id][,split]``: clips cut by time from
    longer files; ``group`` (default: the file) keeps every clip of one song on
    one side of the train/test split.
``labelled-folder``
    a folder of audio plus a table: ``file,label`` (genre strings) or
    ``Id,valence,energy,danceability`` (a multitask set; the audio is
    ``<Id>.<ext>`` or the optional ``file`` column).

Output: ``<out>/<name>/`` and its ``<out>/<name>_beat/`` twin, each with
``{train,test}/<id>.fused.full.npy.gz``, ``{train,test}_labels.txt``,
``{train,test}_groups.txt`` (``Id<TAB>Group``) and, when a genre collection
uses classes outside the lab's 20 genre strings, ``classes.txt`` (one class a
line, index = line number). ``<out>/<name>/features_report.json`` lists every
clip (source, span, group, split, flags) and every problem (file + reason).

Runs are parallel (``--jobs``, one process per job), resumable (clips already
written are skipped; nothing is rewritten when nothing changed) and
deterministic (the same input gives byte-identical files whatever ``--jobs``).

Modules: :mod:`~jaxmusic.features.plan` (collections -> clips, the split),
:mod:`~jaxmusic.features.audio` (reading audio), :mod:`~jaxmusic.features.librosa_recipe`
(the recipe), :mod:`~jaxmusic.features.jax_recipe` (``--frontend jax``: mel and chroma
batched in JAX, beats on the host), :mod:`~jaxmusic.features.convert` (the run and
the set's files). ``--fmax`` lowers the mel cut-off (e.g. 8000 or 2000 Hz, recorded in
the report's settings); ``--audio-features`` keeps the audio-domain baseline features
(:mod:`jaxmusic.features.handcrafted`) of every clip.
"""

from jaxmusic.features.audio import (AUDIO_EXTENSIONS, BLOCK_SAMPLES, FLAG_PADDED,  # noqa: F401
                                     FLAG_SILENT, FLAG_TRUNCATED, RES_TYPE, SAMPLE_RATE, SILENCE_PEAK,
                                     UNDECODABLE_EXTENSIONS, AudioTooLong, NonFiniteAudio,
                                     audio_seconds, decode_audio, load_audio)
from jaxmusic.features.convert import (AUDIO_DIR, CLASSES_NAME, FRONTENDS,  # noqa: F401
                                       GROUPS_HEADER, JOURNAL_NAME, REPORT_NAME,
                                       REPORT_VERSION, Recipe, Result, convert, load_clip,
                                       make_clip)
from jaxmusic.features.librosa_recipe import (FALLBACK_BPM, FLAG_BEAT_FALLBACK,  # noqa: F401
                                              HOP_LENGTH, N_FFT, N_MELS, RECIPES, beat_grid,
                                              extract, extract_musicnn)
from jaxmusic.features.plan import (LAYOUTS, ClipSpec, Plan, clean_id, make_plan,  # noqa: F401
                                    plan_genre_folders, plan_table, split_groups)
