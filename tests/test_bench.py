"""The benchmark runs end to end on tiny sizes and writes a well-formed report.

Speed is never asserted (the machine is shared): only that every variant ran,
that each record has the documented fields and that every figure is positive.
"""

from __future__ import annotations

import json
import numbers
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks import run as bench  # noqa: E402
from jaxmusic.data import tfrecords  # noqa: E402
from tests.conftest import write_genre_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.torch, pytest.mark.slow]

STEP_FIELDS = ("model", "input", "T", "F", "batch_size", "framework", "variant", "status",
               "train_samples_per_s", "train_samples_per_s_min", "train_samples_per_s_max",
               "infer_samples_per_s", "infer_samples_per_s_min", "infer_samples_per_s_max",
               "train_step_s", "infer_step_s", "compile_s", "peak_mem_mb", "flops_train", "mfu", "peak_flops")
MEASURED = ("train_samples_per_s", "train_samples_per_s_min", "train_samples_per_s_max",
            "infer_samples_per_s", "infer_samples_per_s_min", "infer_samples_per_s_max",
            "peak_mem_mb", "flops_train", "mfu", "peak_flops")
EPOCH_FIELDS = ("model", "input", "batch_size", "framework", "variant", "epoch_s", "train_samples_per_s",
                "train_samples_per_s_min", "train_samples_per_s_max", "load_s", "compile_s")
EXPECTED = {
    "lstm": {("jax", "jit"), ("torch", "eager"), ("torch", "packed")},
    "cnn": {("jax", "jit"), ("torch", "eager")},
    "ast_tiny": {("jax", "jit"), ("torch", "eager")},
}


def _numbers(record: dict):
    """Every numeric figure of a record (nested lists and dicts included), with its name."""
    for key, value in record.items():
        if isinstance(value, bool) or key in ("batch_size", "T", "F", "threads", "model_cfg", "budget_s"):
            continue
        if isinstance(value, numbers.Number):
            yield key, value
        elif isinstance(value, (list, tuple)):
            for v in value:
                if isinstance(v, numbers.Number):
                    yield key, v
        elif isinstance(value, dict):
            yield from ((f"{key}.{k}", v) for k, v in _numbers(value))


def test_quick_benchmark(tmp_path):
    write_genre_set(tmp_path / "data", n_train=24, n_test=4, lengths=(40, 60))
    tfrecords.prepare(tmp_path / "data", "fma_genre_spectrograms", tmp_path / "prepared",
                      tfrecords.PrepareOptions(shards=1, progress=False))
    out = tmp_path / "bench"
    args = ["--quick", "--out", str(out), "--models", ",".join(EXPECTED), "--inputs", "beat_mel",
            "--batch-sizes", "2", "--steps", "2", "--epoch", "--epoch-source", str(tmp_path / "data"),
            "--epoch-prepared", str(tmp_path / "prepared"), "--epoch-batch-size", "4"]
    assert bench.main(args) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == bench.SCHEMA
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert results["matmul_peak"]["peak_flops"] > 0
    assert "--quick" in results["commands"][-1]

    records = results["records"]
    seen = {(r["model"], r["framework"], r["variant"]) for r in records}
    assert seen == {(m, f, v) for m, pairs in EXPECTED.items() for f, v in pairs}
    for r in records:
        assert r["status"] == "ok", r
        missing = [f for f in STEP_FIELDS if f not in r]
        assert not missing, (r["model"], r["variant"], missing)
        for f in MEASURED:
            assert r[f] is not None, (r["model"], r["variant"], f)
        assert r["train_samples_per_s_min"] <= r["train_samples_per_s"] <= r["train_samples_per_s_max"]
        assert (r["compile_s"] is None) == (r["framework"] == "torch" and r["variant"] != "compile")
        if r["framework"] == "torch":
            assert r["jax_speedup_train"] > 0 and r["jax_speedup_infer"] > 0
        for name, value in _numbers(r):
            assert value > 0, (r["model"], r["framework"], r["variant"], name, value)

    epochs = results["epoch"]
    assert {(r["framework"], r["variant"]) for r in epochs} == {("jax", "device+jit"), ("torch", "DataLoader+eager")}
    for r in epochs:
        assert not [f for f in EPOCH_FIELDS if f not in r]
        assert len(r["epoch_s"]) == 2 and r["clips"] == r["steps_per_epoch"] * 4
        for name, value in _numbers(r):
            assert value > 0, (r["framework"], name, value)

    md = (out / "RESULTS.md").read_text()
    assert "python -m benchmarks.run --quick" in md and "## Goals" in md and "## End-to-end epoch" in md
    for png in ("train_throughput.png", "infer_throughput.png"):
        assert (out / png).stat().st_size > 0


def test_large_batch_sweep_records_the_recipe(tiny_prepared, tmp_path):
    """benchmarks.large_batch on the tiny set: sqrt lr scaling, warm-up of one epoch, gradient
    accumulation above --max-device-batch, LAMB from --lamb-from, batches above the split skipped."""
    from benchmarks import large_batch

    out = tmp_path / "out"
    large_batch.main(["--prepared", str(tiny_prepared), "--config", "configs/tiny/lstm.py",
                      "--batch-sizes", "16,32,4096", "--epochs", "1", "--base-lr", "0.004",
                      "--lamb-from", "32", "--max-device-batch", "16", "--workdir", str(tmp_path / "runs"),
                      "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    recs = {(r["batch_size"], r["optimizer"]): r for r in results["records"]}
    assert set(recs) == {(16, "adamw"), (32, "adamw"), (32, "lamb")}
    n_train = json.loads((tiny_prepared / "fma_genre_spectrograms_beat" / "manifest.json").read_text())[
        "splits"]["train"]["count"]
    for (batch, _), r in recs.items():
        assert r["learning_rate"] == pytest.approx(0.004 * (batch / 32) ** 0.5)
        assert r["steps_per_epoch"] == n_train // batch
        assert r["warmup_steps"] == n_train // batch
        assert r["grad_accum_steps"] == batch // 16
        assert 0.0 <= r["best_val_accuracy"] <= 1.0 and r["train_samples_per_s"] > 0
    assert results["skipped"] == [f"batch 4096 > the {n_train} training clips"]
    md = (out / "large_batch.md").read_text()
    assert md.count("\n| 32 |") == 2 and (out / "large_batch.png").stat().st_size > 0


DP_SCRIPT = """
import json, sys
import jax, numpy as np
from benchmarks import variants as V
assert jax.device_count() == 2, jax.devices()
w = V.Workload("cnn", V.model_config("cnn", quick=True), V.QUICK_INPUTS["beat_mel"], 4)
out = {}
for name in ("jit", "jit_dp"):
    v = V.JaxVariant(w, name)
    info = v.prepare()
    logits = np.asarray(v._infer(v.state, v.batch)["output"]).tolist()
    v.train_step()
    mu = v.state.opt_state[1][0].mu  # AdamW's first moment after one step: 0.1 x the clipped gradient
    out[name] = {"grads": [(10 * np.asarray(g)).ravel().tolist() for g in jax.tree.leaves(mu)],
                 "stats": [np.asarray(s).ravel().tolist() for s in jax.tree.leaves(v.state.batch_stats)],
                 "logits": logits,
                 "shards": len(v.batch["features"].sharding.device_set), "flops": info["flops_train_xla"],
                 "devices": info["devices"]}
print(json.dumps(out))
"""


def test_data_parallel_variant_takes_the_same_step():
    """jax/jit_dp (the batch split over two host devices) gives the single-device step's gradients,
    BatchNorm statistics (over the global batch) and logits, and counts the whole step's FLOPs (XLA reports one device's share)."""
    import os
    import subprocess
    import sys

    import numpy as np

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", DP_SCRIPT], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    single, dp = out["jit"], out["jit_dp"]
    assert (single["shards"], single["devices"], dp["shards"], dp["devices"]) == (1, 1, 2, 2)
    assert len(single["grads"]) == len(dp["grads"]) > 0
    scale = max(np.abs(g).max() for g in single["grads"])  # conv biases before BatchNorm: gradient ~1e-8
    for a, b in zip(single["grads"], dp["grads"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)
    for a, b in zip(single["stats"], dp["stats"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dp["logits"], single["logits"], rtol=1e-4, atol=1e-5)
    assert dp["flops"] == pytest.approx(single["flops"], rel=0.05)


# --- the GPU sweep's CPU smoke run, with the modules the GPU machine lacks blocked ---------

GPU_MACHINE_LACKS = ("tensorflow", "librosa")
BLOCKED_RUN = """
import runpy, sys
BLOCKED = {blocked!r}
class Hide:
    # every import finder, blind to the blocked packages: importing them raises
    # ModuleNotFoundError and importlib.util.find_spec returns None, as on a machine without them
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
sys.argv = ["benchmarks.gpu", *{argv!r}]
try:
    runpy.run_module("benchmarks.gpu", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
import json
print("MODULES " + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
sys.exit(code)
"""


def test_gpu_sweep_quick_runs_without_tensorflow_or_librosa(tmp_path):
    """benchmarks/gpu.sh's sweep (benchmarks.gpu --quick) end to end on CPU, in a process where
    importing tensorflow or librosa fails: results.json, RESULTS.md and the plots are written,
    every section and every JAX and PyTorch variant of the headline section ran, neither module
    was imported, and the stored ratios, goal rows and MFU follow from the stored step times
    and the model's FLOP count."""
    import os
    import subprocess
    import sys

    out = tmp_path / "gpu"
    env = dict(os.environ, JAX_PLATFORMS="cpu", OMP_WAIT_POLICY="PASSIVE")
    # no time limit here (a shared CI machine): the sections, not the 8 minutes, are tested
    script = BLOCKED_RUN.format(blocked=GPU_MACHINE_LACKS, argv=[str(out), "--quick", "--limit-s", "100000"])
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("MODULES "))
    assert not set(GPU_MACHINE_LACKS) & set(modules)
    assert {"jax", "flax", "optax", "torch"} <= set(modules)
    results = json.loads((out / "results.json").read_text())
    assert results["gpu_sweep"]["sections_done"] == ["headline", "lstm", "batch sizes"]
    ok = {(r["model"], r["framework"], r["variant"], r["batch_size"]) for r in results["records"]
          if r["status"] == "ok"}
    for model in ("cnn", "ast_tiny"):
        for fw, v in (("jax", "jit"), ("jax", "jit_bf16"), ("torch", "eager"), ("torch", "eager_bf16")):
            assert (model, fw, v, 2) in ok, (model, fw, v)
    assert {("lstm", "jax", "jit", 2), ("lstm", "torch", "eager", 2), ("cnn", "jax", "jit", 4)} <= ok
    for r in results["records"]:
        assert r["train_samples_per_s"] > 0 and r["peak_mem_mb"] is not None
    assert "benchmarks.run --quick" in (out / "RESULTS.md").read_text()
    assert results["matmul_peak_bf16"]["dtype"] == "bfloat16" and results["matmul_peak_bf16"]["peak_flops"] > 0
    assert (out / "train_throughput.png").stat().st_size > 0  # samples/s against the batch, per model
    # the ratios and MFU in the results follow from the stored step times and the model's FLOP count
    from benchmarks import flops, report, variants

    recs = {(r["model"], r["batch_size"], r["framework"], r["variant"]): r for r in results["records"]}
    for (model, b, fw, v), r in recs.items():
        w = variants.Workload(model, variants.model_config(model, quick=True), variants.QUICK_INPUTS["beat_mel"], b)
        count = flops.count(w.model_cfg, b, w.input.steps, w.input.features, variants.NUM_CLASSES)
        assert r["flops_train"] == count.train and r["flops_infer"] == count.forward
        assert r["mfu"] == pytest.approx(count.train / r["train_step_s"] / r["peak_flops"])
        if fw == "torch":  # rounds paired as run (a variant with more rounds: its first ones)
            assert r["jax_speedup_train"] == pytest.approx(
                paired(r["train_step_s_all"], recs[(model, b, "jax", "jit")]["train_step_s_all"]))
    rows = report.gpu_goal_rows(results["records"], results["matmul_peak_bf16"])
    ast_eager = next(row for row in rows if row[0] == "ast_tiny beat_mel B=2" and "torch/eager train" in row[1])
    expected = paired(recs[("ast_tiny", 2, "torch", "eager")]["train_step_s_all"],
                      recs[("ast_tiny", 2, "jax", "jit")]["train_step_s_all"])
    assert ast_eager[3].startswith(f"{expected:.2f}x")


def paired(slow: list[float], fast: list[float]) -> float:
    n = min(len(slow), len(fast))
    return float(np.median(np.array(slow[:n]) / np.array(fast[:n])))


def test_accelerator_goals_table():
    """On an accelerator the goals are issue 21's: the LSTM at B=32 and 256, AST against eager and
    torch.compile at every batch measured, the CNN from B=256, ast_small's bf16 MFU at its best
    batch; paired median of torch step / JAX step over the rounds, fastest JAX variant of the
    path; points not measured say so, with the reason (out of memory) where there is one."""
    from benchmarks import report

    def rec(model, fw, variant, times, b=32, flops=None, **extra):
        return {"model": model, "input": "beat_mel", "batch_size": b, "framework": fw, "variant": variant,
                "status": "ok", "train_step_s_all": times, "train_step_s": float(np.median(times)),
                **({"flops_train": flops} if flops else {}), **extra}

    torch_f32, torch_bf16, compiled = [0.030, 0.032, 0.031], [0.020, 0.021, 0.019], [0.011, 0.011, 0.011]
    jit, jit_dp, jit_bf16 = [0.020, 0.020, 0.025], [0.030, 0.030, 0.030], [0.010, 0.012, 0.019]
    records = [rec("ast_small", "torch", "eager", torch_f32), rec("ast_small", "jax", "jit", jit),
               rec("ast_small", "jax", "jit_dp", jit_dp), rec("ast_small", "torch", "eager_bf16", torch_bf16),
               rec("ast_small", "torch", "compile_bf16", compiled),
               rec("ast_small", "jax", "jit_bf16", jit_bf16, flops=4e12),
               rec("ast_small", "jax", "jit_bf16", [0.02, 0.02], b=64, flops=8e12),
               rec("ast_small", "torch", "eager_bf16", [0.05, 0.05], b=64),
               {**rec("ast_small", "jax", "jit_bf16", [1.0], b=128), "status": "failed",
                "reason": "out of memory: RESOURCE_EXHAUSTED"},
               rec("cnn", "jax", "jit_bf16", [0.01, 0.01], b=256), rec("cnn", "torch", "eager_bf16", [0.03, 0.05], b=256),
               rec("lstm", "jax", "jit", [0.01, 0.01]), rec("lstm", "torch", "eager", [0.002, 0.003])]
    peak = {"n": 8192, "peak_flops": 8e14}
    rows = report.gpu_goal_rows(records, peak)
    table = {(r[0], r[1]): r for r in rows}
    f32 = table[("ast_small beat_mel B=32", "float32: jax/jit vs torch/eager train")]   # jit beats jit_dp
    expected = np.median(np.array(torch_f32) / np.array(jit))
    assert f32[3].startswith(f"{expected:.2f}x") and f32[4] == "yes"
    bf = table[("ast_small beat_mel B=32", "bfloat16: jax/jit_bf16 vs torch/eager_bf16 train")]
    assert bf[3].startswith(f"{np.median(np.array(torch_bf16) / np.array(jit_bf16)):.2f}x") and bf[4] == "yes"
    behind = table[("ast_small beat_mel B=32", "bfloat16: jax/jit_bf16 vs torch/compile_bf16 train")]
    assert behind[2] == ">= 1x" and behind[3].startswith(f"{np.median(np.array(compiled) / np.array(jit_bf16)):.2f}x")
    assert behind[4] == "**no**"
    assert table[("ast_small beat_mel B=64", "bfloat16: jax/jit_bf16 vs torch/eager_bf16 train")][3] == "2.50x (2.5-2.5)"
    oom = table[("ast_small beat_mel B=128", "bfloat16: jax vs torch/eager_bf16 train")]
    assert "out of memory" in oom[3]
    cnn = table[("cnn beat_mel B=256", "bfloat16: jax/jit_bf16 vs torch/eager_bf16 train")]
    assert cnn[2] == ">= 4x" and cnn[3].startswith("4.00x") and cnn[4] == "yes"
    lstm = table[("lstm beat_mel B=32", "float32: jax/jit vs torch/eager train")]
    assert lstm[3].startswith("0.25x") and lstm[4] == "**no**"
    assert table[("lstm full_mel B=256", "bfloat16: jax vs torch/eager_bf16 train")][3] == "not measured"
    assert table[("ast_tiny beat_mel any B", "jax vs torch/eager/compile train")][3] == "not measured"
    assert table[("cnn full_mel B>=256", "jax vs torch/eager train")][3] == "not measured"
    mfu = next(r for r in rows if "MFU" in r[1])
    assert mfu[0] == "ast_small beat_mel B=64 (best batch)" and mfu[3] == f"{8e12 / 0.02 / 8e14:.1%}"
    assert mfu[4] == "yes"


# --- the benchmark times `jaxmusic train`'s own step ---------------------------------------

def test_benchmark_step_is_the_train_loops_step(tiny_prepared, tmp_path):
    """One `jaxmusic train` step (the real loop: tiny CNN config, one batch, one epoch, its
    final checkpoint) and one step of benchmarks.variants.JaxVariant from the same initial
    parameters on the same batch give identical parameters and batch statistics."""
    import jax
    import numpy as np

    from benchmarks import variants as V
    from jaxmusic import checkpoint, runs, steps
    from jaxmusic.config import load_config
    from jaxmusic.data.pipeline import train_batches
    from jaxmusic.train import train

    cfg = load_config("configs/tiny/cnn.py", [f"--config.data.prepared={tiny_prepared}", "--config.train.epochs=1",
                                               "--config.train.overfit_batches=1", "--config.train.patience=0"])
    workdir = tmp_path / "run"
    train(cfg, workdir, progress=False)
    trained, _ = checkpoint.load_variables(workdir, which="latest")

    # the loop's batch (overfit mode: the first batch of epoch 0), rebuilt as train.py reads it
    run = runs.build_run(cfg)
    pcfg = run.pipeline_config(cfg.train.batch_size, seed=cfg.train.seed)
    batch = next(iter(train_batches(run.pset, "train", pcfg, epoch=0, process_index=0, process_count=1,
                                    steps=1)))

    w = V.Workload("cnn", dict(cfg.model), V.Input("tiny", run.max_length, run.num_features,
                                                    (1, run.max_length)), cfg.train.batch_size,
                   seed=cfg.train.seed, num_classes=len(run.pset.classes))
    variant = V.JaxVariant(w, "jit", base_config=cfg)
    _, mesh, state, _ = variant.build()
    assert jax.tree.structure(state.params) == jax.tree.structure(trained["params"])
    # the benchmark starts from the loop's initial parameters (init_state of the same config)
    loop_state = steps.init_state(run, mesh, 1)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(loop_state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    variant.prepare(batch={k: batch[k] for k in ("features", "lengths", "label", "mask")})
    variant.train_step()
    assert int(variant.state.step) == 1
    for got, ref in ((variant.state.params, trained["params"]), (variant.state.batch_stats, trained["batch_stats"])):
        assert jax.tree.structure(got) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_loop_rate_is_recorded(tmp_path):
    """--train-loop: for the quick CNN point, `jaxmusic train`'s own loop ran 2 epochs on a synthetic
    set of the point's shape written by `jaxmusic prepare`'s writer, and its measured samples/s (the
    second epoch's, from its history.json) sits in the jax record and in RESULTS.md."""
    from benchmarks import variants as V

    out, keep = tmp_path / "bench", tmp_path / "loops"
    assert bench.main(["--quick", "--out", str(out), "--models", "cnn", "--inputs", "beat_mel",
                       "--batch-sizes", "2", "--steps", "2", "--torch-variants", "none",
                       "--train-loop", "--train-loop-dir", str(keep)]) == 0
    (rec,) = json.loads((out / "results.json").read_text())["records"]
    assert (rec["framework"], rec["variant"], rec["status"]) == ("jax", "jit", "ok")
    assert "train_loop_skipped" not in rec, rec.get("train_loop_skipped")
    assert rec["train_loop_samples_per_s"] > 0
    assert rec["train_loop_over_step"] == pytest.approx(rec["train_loop_samples_per_s"] / rec["train_samples_per_s"])

    # the loop trained on the synthetic set: its shape is the point's, its step count the set's
    workdir = Path(rec["train_loop_workdir"])
    manifest = json.loads((workdir.parent / "prepared" / "fma_genre_spectrograms" / "manifest.json").read_text())
    point = V.QUICK_INPUTS["beat_mel"]
    assert manifest["max_length"] == point.steps and manifest["splits"]["train"]["count"] == rec["train_loop_clips"]
    assert point.lengths[0] <= manifest["splits"]["train"]["length"]["min"]
    assert "validation" not in manifest["splits"]
    # with the variant's config (benchmark_config: model, dtype, batch, seed, the lab's recipe)
    w = V.Workload("cnn", V.model_config("cnn", quick=True), point, 2)
    want, used = V.benchmark_config(w).to_dict(), json.loads((workdir / "config.json").read_text())
    assert used["model"] == json.loads(json.dumps(want["model"]))
    for key in ("batch_size", "seed", "dtype", "optimizer", "learning_rate", "weight_decay", "clip_norm"):
        assert used["train"][key] == want["train"][key], key
    assert used["train"]["epochs"] == 2
    run_record = json.loads((workdir / "run.json").read_text())
    assert (run_record["max_length"], run_record["num_features"]) == (point.steps, point.features)
    steps_per_epoch = manifest["splits"]["train"]["count"] // 2
    history = json.loads((workdir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["step"] for h in history] == [steps_per_epoch, 2 * steps_per_epoch] == rec["train_loop_steps"]
    assert rec["train_loop_samples_per_s"] == history[1]["samples_per_s"]
    assert history[1]["samples_per_s"] == pytest.approx(steps_per_epoch * 2 / history[1]["time_s"])
    md = (out / "RESULTS.md").read_text()
    assert "train loop samples/s" in md and f"(x{rec['train_loop_over_step']:.2f})" in md


def test_hlo_text_parsing_and_busy_time_of_the_profiler():
    """benchmarks.profile reads an HLO module's text into instructions with their kind and JAX op
    name, and measures busy time as the union of operation intervals."""
    import jax
    import jax.numpy as jnp

    from benchmarks import profile

    f = jax.jit(lambda a, b: jnp.tanh(a @ b) * 2.0)
    x = jnp.ones((64, 32), jnp.float32)
    text = f.lower(x, x.T).compile().as_text()
    instructions = profile.hlo_instructions(text)
    kinds = {profile.kernel_kind(i) for i in instructions.values()}
    assert any(k.startswith("dot") for k in kinds), kinds
    dots = [i for i in instructions.values() if profile.kernel_kind(i).startswith("dot")]
    assert any("dot_general" in i["op_name"] for i in dots)
    assert all(i["shape"].startswith("f32[64,64]") for i in dots)
    assert profile._phase_and_path("jit(train_step)/transpose(jvp(Model))/backbone/block_3/mlp/fc1/dot_general") \
        == ("backward", "backbone/block_*/mlp/fc1/dot_general")
    assert profile._phase_and_path("jit(train_step)/jvp(Model)/backbone/conv_0/conv_general_dilated")[0] == "forward"
    assert profile._phase_and_path("jit(train_step)/add")[0] == "update"
    assert profile._union([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0
    assert profile._union([(0.0, 10.0), (2.0, 3.0)]) == 10.0


def test_quick_profile_accounts_for_the_step(tmp_path):
    """A profile of the tiny CNN: every JAX operation is attributed (groups sum to the op time),
    busy time lies within the wall time, and PyTorch's profile names aten operators."""
    import subprocess
    import sys

    out = tmp_path / "prof"
    subprocess.run([sys.executable, "-m", "benchmarks.profile", "--quick", "--model", "cnn", "--input", "beat_mel",
                    "--batch-size", "4", "--variants", "jax/jit,torch/eager", "--steps", "2", "--out", str(out)],
                   check=True, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    result = json.loads((out / "profile_cnn_beat_mel_B4.json").read_text())
    jx, pt = result["variants"]["jax/jit"], result["variants"]["torch/eager"]
    assert 0 < jx["busy_s"] <= jx["wall_s"] * 1.05 and jx["op_s"] > 0
    assert sum(jx["kernels"].values()) == pytest.approx(jx["op_s"], rel=1e-6)
    assert any(k.startswith("convolution") for k in jx["kernels"]), jx["kernels"]
    assert {g["phase"] for g in jx["groups"]} >= {"forward", "backward"}
    assert any(r["op"].startswith("aten::") for r in pt["top_ops"]) and pt["wall_s"] > 0
    assert "## jax/jit" in (out / "profile_cnn_beat_mel_B4.md").read_text()


def test_products_microbenchmark_checks_and_reports_the_three_products(capsys):
    """benchmarks.products: each of a layer's three products is checked against torch.einsum
    (inside the script) and reported with both rates and the paired ratio."""
    import re

    from benchmarks import products

    assert products.main(["--m", "64", "--k", "8", "--n", "16", "--rounds", "3", "--torch-threads", "1"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "GFLOP/s" in l]
    assert [l.split(":")[0] for l in lines] == ["forward [M,K] x [K,N]", "input gradient [M,N] x [K,N]^T",
                                                "weight gradient [M,K]^T x [M,N]"]
    for line in lines:
        jax_rate, torch_rate, ratio = map(float, re.findall(r"(\d+(?:\.\d+)?)(?: GFLOP/s|x torch)", line))
        assert jax_rate >= 0 and torch_rate >= 0 and ratio > 0


def test_every_record_of_a_point_gets_the_model_flop_count_and_its_paths_rate():
    """The model FLOPs (benchmarks/flops.py) are the same for every variant and framework of a
    point; MFU divides by the bf16 matmul rate for bf16 variants where one was measured (an
    accelerator), by the float32 rate otherwise."""
    from benchmarks import flops, variants
    from benchmarks import run as bench

    w = variants.Workload("ast_tiny", variants.model_config("ast_tiny", quick=True), variants.QUICK_INPUTS["beat_mel"], 4)
    count = flops.count(w.model_cfg, 4, w.input.steps, w.input.features, variants.NUM_CLASSES)

    class Args:
        tag = ""

    sweep = bench.Sweep(Args(), 1e12, 4e12)
    recs = [dict(sweep.base(w, fw, v), train_step_s=0.5, infer_step_s=0.1)
            for fw, v in (("jax", "jit"), ("jax", "jit_bf16"), ("torch", "eager"), ("torch", "eager_bf16"))]
    assert {(r["flops_train"], r["flops_infer"]) for r in recs} == {(count.train, count.forward)}
    for r in recs:
        bench.set_mfu(r, sweep.peak_flops, sweep.peak_bf16)
    assert [r["peak_flops"] for r in recs] == [1e12, 4e12, 1e12, 4e12]
    assert recs[1]["mfu"] == pytest.approx(count.train / 0.5 / 4e12)
    bench.set_mfu(recs[1], 1e12)  # a CPU: no bf16 rate, the float32 one
    assert recs[1]["mfu"] == pytest.approx(count.train / 0.5 / 1e12) and recs[1]["peak_dtype"] == "float32"


def test_points_past_the_deadline_are_recorded_not_run(tmp_path):
    """--deadline-s: a point that cannot start in time is a record (skipped, reason "time: ..."),
    so a section cut short says what it left out."""
    from benchmarks import run as bench

    assert bench._past_deadline(None, 1e9, 1e9) is None
    assert bench._past_deadline(60, 10, None) is None
    assert bench._past_deadline(60, 61, None).startswith("time: the run's deadline")
    assert bench._past_deadline(60, 30, 20).startswith("time: would end past")
    out = tmp_path / "b"
    assert bench.main(["--quick", "--models", "cnn", "--inputs", "beat_mel", "--batch-sizes", "2,4",
                       "--jax-variants", "jit", "--torch-variants", "eager", "--deadline-s", "0",
                       "--out", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert [(r["batch_size"], r["framework"], r["status"]) for r in records] == [(2, "jax", "skipped"),
                                                                                (2, "torch", "skipped")]
    assert all(r["reason"].startswith("time:") for r in records)
    assert "time: the run's deadline (0 s) passed" in (out / "RESULTS.md").read_text()


def test_gpu_train_script_runs_without_tensorflow_librosa_or_torch(tmp_path):
    """benchmarks/gpu_train.sh --quick on the CPU, where importing tensorflow, tensorflow_datasets,
    librosa or torch raises (the accelerator machine has none of them): the loop trains on the
    set the script wrote, and the table's ratio is the stored rates' ratio."""
    blocked = tmp_path / "blocked"
    for name in ("tensorflow", "tensorflow_datasets", "librosa", "torch"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(blocked), PYTHON=sys.executable)
    p = subprocess.run(["bash", "benchmarks/gpu_train.sh", str(out), "--quick", "--points", "cnn:8",
                        "--clips", "40"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads((out / "results.json").read_text())
    (rec,) = results["records"]
    assert rec["train_loop_clips"] == 40 and rec["train_loop_steps_per_epoch"] == 5
    assert rec["train_loop_placement"].startswith("auto: device")
    assert rec["loop_over_step"] == pytest.approx(rec["train_loop_samples_per_s"] / rec["step_samples_per_s"])
    md = (out / "RESULTS.md").read_text()
    assert f"| cnn | beat_mel | 8 | float32 | " in md and f"{rec['loop_over_step']:.2f}" in md
