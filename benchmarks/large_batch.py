"""Large-batch training: validation accuracy and throughput against the global batch size.

    python -m benchmarks.large_batch --source DATA [--prepared PREP] \\
        [--config configs/demo/lstm_beat_fused.py] [--batch-sizes 32,128,512,2048] \\
        [--epochs 15] [--optimizers adamw,lamb] [--out docs/large_batch]

Every run trains the same config for the same number of epochs (no early stopping:
the same data budget), with the large-batch recipe of jaxmusic's optimiser options:

* learning rate scaled with the batch: ``lr(B) = lr(32) * (B / 32) ** p`` with
  ``p = 0.5`` (``--scaling sqrt``, the usual rule for Adam-type optimisers) or 1
  (``linear``);
* linear warm-up over the first ``--warmup-epochs`` epochs, then cosine decay
  (``train.schedule = warmup_cosine``);
* ``--optimizers``: AdamW at every batch size, and LAMB (layer-wise trust ratios,
  ``optax.lamb``) from ``--lamb-from`` up; LARS is available the same way;
* batches above ``--max-device-batch`` are split into micro-batches with gradient
  accumulation (``optax.MultiSteps``; tests/test_train.py checks that the
  accumulated step equals the large-batch step).

A batch cannot exceed the training split (one step per epoch then sees every clip
once); larger requested sizes are skipped with a note. Output in ``--out``:
``results.json`` (one record per run), ``large_batch.md`` (table) and
``large_batch.png`` (best validation accuracy and samples/s against the batch).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _csv(text: str, cast=str) -> list:
    return [cast(x) for x in text.split(",") if x.strip()]


def make_config(args, batch: int, optimizer: str, n_train: int, seed: int, dtype: str):
    from jaxmusic.config import load_config

    c = load_config(args.config)
    base_lr = args.base_lr or c.train.learning_rate
    c.data.prepared = str(args.prepared)
    c.train.batch_size = batch
    c.train.optimizer = optimizer
    c.train.epochs = args.epochs
    c.train.patience = 0
    c.train.seed = seed
    c.train.dtype = dtype
    power = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}[args.scaling]
    c.train.learning_rate = base_lr * (batch / args.base_batch) ** power
    if optimizer in ("lamb", "lars"):
        c.train.learning_rate *= args.lamb_lr_factor
    steps_per_epoch = max(1, n_train // batch)
    c.train.schedule = "warmup_cosine"
    c.train.warmup_steps = max(1, round(args.warmup_epochs * steps_per_epoch))
    c.train.grad_accum_steps = max(1, math.ceil(batch / args.max_device_batch))
    c.train.keep_checkpoints = 1
    return c, steps_per_epoch


def run_one(args, batch: int, optimizer: str, n_train: int, seed: int, dtype: str) -> dict:
    from jaxmusic.evaluate import evaluate_run
    from jaxmusic.train import train

    config, steps_per_epoch = make_config(args, batch, optimizer, n_train, seed, dtype)
    name = f"b{batch}_{optimizer}_{dtype}_s{seed}" + (f"_lr{args.lamb_lr_factor:g}x" if optimizer != "adamw" else "")
    workdir = Path(args.workdir) / name
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    t0 = time.perf_counter()
    out = train(config, workdir, progress=False)
    wall = time.perf_counter() - t0
    history = out["meta"]["history"]
    val = [h["validation"]["accuracy"] for h in history]
    best = max(range(len(val)), key=val.__getitem__)
    rates = sorted(h["samples_per_s"] for h in history[1:]) or [history[0]["samples_per_s"]]
    test = evaluate_run(workdir, progress=False)
    test_acc = test.get("test", {}).get(config.data.set, {}).get("accuracy")
    factor = args.lamb_lr_factor if optimizer in ("lamb", "lars") else 1.0
    rec = {"batch_size": batch, "optimizer": optimizer, "lr_factor": factor, "dtype": dtype, "seed": seed,
           "learning_rate": config.train.learning_rate, "warmup_steps": config.train.warmup_steps,
           "grad_accum_steps": config.train.grad_accum_steps, "steps_per_epoch": steps_per_epoch,
           "epochs": len(history), "best_val_accuracy": val[best], "best_epoch": best + 1,
           "final_val_accuracy": val[-1], "test_accuracy": test_acc,
           "train_samples_per_s": rates[len(rates) // 2], "wall_s": wall}
    print(json.dumps(rec), flush=True)
    return rec


def _opt(r: dict) -> str:
    factor = r.get("lr_factor", 1.0)
    return r["optimizer"] + ("" if factor == 1.0 else f" (lr x{factor:g})")


def write_report(results: dict, out: Path) -> Path:
    recs = results["records"]
    base = [r for r in recs if r["batch_size"] == results["base_batch"] and r["optimizer"] == "adamw"
            and r["dtype"] == "float32"]
    base_acc = sum(r["best_val_accuracy"] for r in base) / len(base) if base else None
    lines = ["# Large-batch training on the sample data", "",
             f"Generated {results['date']} by (each run of the script appends its records):", "", "```",
             *results["commands"], "```", "",
             results["setup"], "",
             "| batch | optimizer | dtype | seed | lr | warm-up steps | accum | steps/epoch | best val acc "
             "(epoch) | vs batch-32 AdamW | test acc | train samples/s |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(recs, key=lambda r: (r["batch_size"], r["optimizer"], r.get("lr_factor", 1.0), r["dtype"],
                                         r["seed"])):
        delta = "" if base_acc is None else f"{100 * (r['best_val_accuracy'] - base_acc):+.1f} pt"
        test = "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.3f}"
        lines.append(f"| {r['batch_size']} | {_opt(r)} | {r['dtype']} | {r['seed']} | "
                     f"{r['learning_rate']:.2e} | {r['warmup_steps']} | {r['grad_accum_steps']} | "
                     f"{r['steps_per_epoch']} | {r['best_val_accuracy']:.3f} ({r['best_epoch']}) | {delta} | "
                     f"{test} | {r['train_samples_per_s']:.0f} |")
    if results.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(results["skipped"])]
    for note in results.get("notes", []):
        lines += ["", note]
    lines += ["", "![validation accuracy and throughput against the batch](large_batch.png)", ""]
    md = out / "large_batch.md"
    md.write_text("\n".join(lines) + "\n")
    _plot(recs, out / "large_batch.png", base_acc)
    return md


def _plot(recs: list, path: Path, base_acc) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for opt in sorted({_opt(r) for r in recs}):
        rs = sorted((r for r in recs if _opt(r) == opt and r["dtype"] == "float32" and r["seed"] == 0),
                    key=lambda r: r["batch_size"])
        if not rs:
            continue
        ax1.plot([r["batch_size"] for r in rs], [r["best_val_accuracy"] for r in rs], "o-", label=opt)
        ax2.plot([r["batch_size"] for r in rs], [r["train_samples_per_s"] for r in rs], "o-", label=opt)
    if base_acc is not None:
        ax1.axhline(base_acc, color="grey", ls="--", lw=1, label="batch-32 AdamW")
    for ax, ylabel in ((ax1, "best validation accuracy"), (ax2, "train samples/s (median epoch)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("global batch size")
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=None, help="lab-layout root (`jaxmusic sample-data` output)")
    p.add_argument("--prepared", default=None, help="`jaxmusic prepare` root (made from --source if missing)")
    p.add_argument("--config", default=str(HERE.parent / "configs/demo/lstm_beat_fused.py"))
    p.add_argument("--batch-sizes", default="32,64,128,256,512,1024,2048,4096")
    p.add_argument("--base-batch", type=int, default=32)
    p.add_argument("--base-lr", type=float, default=None, help="lr at --base-batch (default: the config's)")
    p.add_argument("--scaling", choices=("sqrt", "linear", "none"), default="sqrt")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--optimizers", default="adamw,lamb")
    p.add_argument("--lamb-from", type=int, default=256, help="smallest batch trained with LAMB/LARS too")
    p.add_argument("--lamb-lr-factor", type=float, default=1.0, help="LAMB/LARS lr = factor x the scaled lr")
    p.add_argument("--max-device-batch", type=int, default=1024, help="larger batches accumulate gradients")
    p.add_argument("--dtypes", default="float32", help="e.g. float32,bfloat16")
    p.add_argument("--seeds", default="0")
    p.add_argument("--workdir", default="runs/large_batch")
    p.add_argument("--out", default=str(HERE.parent / "docs" / "large_batch"))
    p.add_argument("--append", action="store_true", help="merge into --out's results.json")
    p.add_argument("--note", default=None, help="a remark kept in results.json and the report")
    args = p.parse_args(argv)

    from jaxmusic.config import load_config
    from jaxmusic.data.pipeline import PreparedSet

    set_name = load_config(args.config).data.set
    if args.prepared is None:
        if args.source is None:
            p.error("give --prepared or --source")
        args.prepared = str(Path(args.workdir) / "prepared")
    if not (Path(args.prepared) / set_name / "manifest.json").exists():
        if args.source is None:
            p.error(f"{args.prepared}/{set_name} is not prepared; give --source")
        from jaxmusic.data import tfrecords

        tfrecords.prepare(args.source, set_name, args.prepared, tfrecords.PrepareOptions(shards=4))
    n_train = PreparedSet.open(Path(args.prepared) / set_name).count("train")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"records": [], "skipped": []}
    if args.append and (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
    if args.note:
        results.setdefault("notes", []).append(args.note)
    results.update(date=time.strftime("%Y-%m-%d %H:%M"), base_batch=args.base_batch,
                   commands=results.get("commands", []) + [
                       "python -m benchmarks.large_batch " + shlex.join(argv if argv is not None else sys.argv[1:])],
                   setup=(f"Config `{Path(args.config).name}` on `{set_name}` ({n_train} training clips), "
                          f"{args.epochs} epochs per run, no early stopping; lr = {args.base_lr or 'config'} x "
                          f"(B/{args.base_batch})^{ {'sqrt': '0.5', 'linear': '1', 'none': '0'}[args.scaling]} "
                          f"(LAMB/LARS runs: times --lamb-lr-factor, see the lr column), warm-up {args.warmup_epochs} epoch(s) then cosine; "
                          f"gradient accumulation above {args.max_device_batch} per step."))
    key = lambda r: (r["batch_size"], r["optimizer"], r.get("lr_factor", 1.0), r["dtype"], r["seed"])  # noqa: E731
    for batch in _csv(args.batch_sizes, int):
        if batch > n_train:
            note = f"batch {batch} > the {n_train} training clips"
            if note not in results["skipped"]:
                results["skipped"].append(note)
            print("skip:", note, flush=True)
            continue
        for optimizer in _csv(args.optimizers):
            if optimizer != "adamw" and batch < args.lamb_from:
                continue
            for dtype in _csv(args.dtypes):
                for seed in _csv(args.seeds, int):
                    rec = run_one(args, batch, optimizer, n_train, seed, dtype)
                    results["records"] = [r for r in results["records"] if key(r) != key(rec)] + [rec]
                    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
                    write_report(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {write_report(results, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
