"""`jaxmusic train` and `jaxmusic evaluate`."""

from __future__ import annotations

from pathlib import Path

from jaxmusic import evaluate, parallel, runs, train
from jaxmusic.config import load_config, read_config
from jaxmusic.data.pipeline import PreparedSet

ACCEPTS_EXTRA = True  # train: --config.x=y overrides
VERIFY_HELP = ("check every shard's sha256 against its manifest when a prepared set is opened "
               "(data.verify=sha256; by default sizes always, sha256 on the first open)")


def add_arguments(parser, command: str) -> None:
    if command == "evaluate":
        parser.add_argument("--workdir", required=True, help="a run directory")
        parser.add_argument("--set", dest="sets", action="append",
                            help="prepared set to test on (repeat; default: the run's set and its twin)")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--verify", action="store_true", help=VERIFY_HELP)
        parser.add_argument("--quiet", action="store_true")
        return
    parser.add_argument("--config", required=True, help="configs/<experiment>.py")
    parser.add_argument("--workdir", required=True, help="run directory (runs/<name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in --workdir")
    parser.add_argument("--init-from", help="transfer: start the backbone from this run's best "
                        "checkpoint (its model and view settings are taken over)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="with --init-from: train the head only")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the test-set evaluation after training")
    parser.add_argument("--verify", action="store_true", help=VERIFY_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: join JAX's runtime; without --coordinator the cluster "
                             "is auto-detected (SLURM, Open MPI, TPU pod slices)")
    parser.add_argument("--coordinator", help="multi-host: coordinator host:port")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)


def run(args, command: str) -> int:
    if command == "evaluate":
        if args.extra:
            raise SystemExit(f"jaxmusic evaluate: error: unrecognized arguments: {' '.join(args.extra)}")
        evaluate.evaluate_run(args.workdir, args.sets, progress=not args.quiet,
                              batch_size=args.batch_size, verify="sha256" if args.verify else None)
        return 0
    if args.distributed or args.coordinator or args.num_processes:
        parallel.init_distributed(args.coordinator, args.num_processes, args.process_id)
    config = load_config(args.config, args.extra)
    if args.verify:
        config.data.verify = "sha256"
        saved = Path(args.workdir) / runs.CONFIG_FILE
        if args.resume and saved.exists():  # a resumed run reads its own config: check its set here
            saved_data = read_config(saved).data
            PreparedSet.open(Path(saved_data.prepared) / saved_data.set, verify="sha256")
    if args.init_from:
        config = runs.match_source_run(config, args.init_from)
        config.train.init_from = args.init_from
        config.train.freeze_backbone = args.freeze_backbone
    train.train(config, args.workdir, resume=args.resume, progress=not args.quiet)
    if not args.no_evaluate:
        evaluate.evaluate_run(args.workdir, progress=not args.quiet)
    return 0
