"""`jaxmusic predict SONG...`: genre (and emotion) of audio files from trained runs."""

from __future__ import annotations

import json

from jaxmusic import predict
from jaxmusic.data import lab
from jaxmusic.runs import LoadedRun


def add_arguments(parser, command: str) -> None:
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3 where "
                        "the system's libsndfile decodes it)")
    parser.add_argument("--workdir", help="a genre run directory")
    parser.add_argument("--emotion-workdir", help="an emotion (regression/multitask) run directory")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def run(args, command: str) -> int:
    if not args.workdir and not args.emotion_workdir:
        raise SystemExit("jaxmusic predict: give --workdir (genre) and/or --emotion-workdir")
    genre = LoadedRun(args.workdir) if args.workdir else None
    if genre is not None and genre.task.data_kind != "genre":
        genre, emotion_dir = None, args.workdir  # an emotion run given as --workdir
    else:
        emotion_dir = args.emotion_workdir
    emotion = LoadedRun(emotion_dir) if emotion_dir else None
    status = 0
    for path in args.audio:
        try:
            result = predict.predict_file(path, genre, emotion, args.top_k)
        except lab.DatasetError as e:
            print(f"jaxmusic predict: error: {e}", flush=True)
            status = 2
            continue
        if args.json:
            print(json.dumps(predict.json_result(result)))
            continue
        print(f"{result['file']} ({result['duration_s']:.1f} s, {result['windows']} window(s)"
              + (f"; {', '.join(result['flags'])}" if result["flags"] else "") + ")")
        for g in result["genres"] or []:
            print(f"  {g['label']:<12} {g['probability']:.3f}")
        if result["emotion"]:
            print("  " + ", ".join(f"{k} {v:.3f}" for k, v in result["emotion"].items()))
    return status
