"""`jaxmusic tag AUDIO...`: music tags from a pretrained musicnn tagger (the musicnn wheel's weights)."""

from __future__ import annotations

import json

from jaxmusic import pretrained, tagging


def add_arguments(parser, command: str) -> None:
    parser.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3 where libsndfile decodes it)")
    parser.add_argument("--model", default="MTT_musicnn", choices=sorted(pretrained.MODELS),
                        help="pretrained tagger (default MTT_musicnn)")
    parser.add_argument("--top-k", type=int, default=5, help="tags shown per file / patch (default 5)")
    parser.add_argument("--per-patch", action="store_true", help="also the tags of every 3 s patch")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def run(args, command: str) -> int:
    if args.top_k < 1:
        raise SystemExit("jaxmusic tag: --top-k must be at least 1")
    failed = []

    def on_error(path, error):
        print(f"jaxmusic tag: error: {error}", flush=True)
        failed.append(path)

    try:
        results = tagging.tag_files(args.audio, args.model, args.top_k, args.per_patch, on_error=on_error)
    except pretrained.PretrainedMissing as e:
        raise SystemExit(f"jaxmusic tag: {e}")
    for r in results:
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{r['file']} ({r['duration_s']:.1f} s, {r['patches']} patch(es), {r['model']}"
              + (f"; {', '.join(r['flags'])}" if r["flags"] else "") + ")")
        for t in r["tags"]:
            print(f"  {t['tag']:<18} {t['probability']:.3f}")
        for p in r.get("per_patch", []):
            print(f"  {p['start_s']:7.2f} s  " + ", ".join(f"{t['tag']} {t['probability']:.2f}" for t in p["tags"]))
    return 2 if failed else 0
