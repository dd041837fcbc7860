"""Generative augmentation: the diffusion formulas against numpy, the loss, seeded
samples, and the prepared set of real + generated clips."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic import generative, runs
from jaxmusic.cli import main as cli_main
from jaxmusic.config import cnn_model, lab_config
from jaxmusic.data import lab, tfrecords
from jaxmusic.data.pipeline import PipelineConfig, PreparedSet, eval_batches
from jaxmusic.models import diffusion
from tests.conftest import write_genre_set, write_multitask_set

TINY = dict(crop=16, channels=(16, 16), steps=20, batch_size=4, log_every=10)


def test_forward_noising_is_ddpm_eq4():
    betas = diffusion.linear_betas(1000)
    np.testing.assert_allclose(betas[[0, 499, 999]], [1e-4, 1e-4 + 499 * (0.02 - 1e-4) / 999, 0.02])
    abar = diffusion.alpha_bars(betas)
    np.testing.assert_allclose(abar, np.exp(np.cumsum(np.log1p(-betas))), rtol=1e-12)
    rng = np.random.default_rng(0)
    x0, noise = rng.normal(size=(5, 7, 3)), rng.normal(size=(5, 7, 3))
    t = np.array([0, 10, 500, 998, 999])
    got = diffusion.q_sample(jnp.asarray(x0, jnp.float32), jnp.asarray(t), jnp.asarray(noise, jnp.float32),
                             jnp.asarray(abar, jnp.float32))
    want = np.sqrt(abar[t])[:, None, None] * x0 + np.sqrt(1 - abar[t])[:, None, None] * noise
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_velocity_target_and_its_noise():
    """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022), and eps recovered from (x_t, v)."""
    rng = np.random.default_rng(2)
    abar = diffusion.alpha_bars(diffusion.linear_betas(1000))
    x0, noise = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5, 3))
    t = np.array([0, 300, 700, 999])
    a = abar[t][:, None, None]
    v = diffusion.v_target(jnp.asarray(x0), jnp.asarray(t), jnp.asarray(noise), jnp.asarray(abar))
    np.testing.assert_allclose(np.asarray(v), np.sqrt(a) * noise - np.sqrt(1 - a) * x0, rtol=1e-5, atol=1e-5)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    eps = diffusion.eps_from_v(jnp.asarray(x_t), v, jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(eps), noise, atol=1e-5)


def _ddim_reference(x, eps, a_t, a_prev, eta, z, clip):
    """Song et al. 2021, eq. 12, written out in float64."""
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    if clip is not None:
        x0 = np.clip(x0, -clip, clip)
        eps = (x - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    return np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma ** 2) * eps + sigma * z


@pytest.mark.parametrize("eta,clip", [(0.0, None), (0.7, None), (0.0, 1.5), (1.0, 2.0)])
def test_ddim_update_is_song_eq12(eta, clip):
    rng = np.random.default_rng(1)
    x, eps, z = (rng.normal(size=(4, 6, 2)) for _ in range(3))
    abar = diffusion.alpha_bars(diffusion.linear_betas(1000))
    a_t, a_prev = abar[700], abar[650]
    got, _ = diffusion.ddim_step(jnp.asarray(x, jnp.float32), jnp.asarray(eps, jnp.float32), a_t, a_prev,
                                 eta=eta, noise=jnp.asarray(z, jnp.float32), clip=clip)
    np.testing.assert_allclose(np.asarray(got), _ddim_reference(x, eps, a_t, a_prev, eta, z, clip),
                               rtol=1e-4, atol=1e-4)
    # With the true noise, one deterministic step to abar = 1 returns x_0 exactly.
    x0 = rng.normal(size=(3, 5))
    x_t = np.sqrt(a_t) * x0 + np.sqrt(1 - a_t) * z[0, :3, :1].repeat(5, 1)
    back, _ = diffusion.ddim_step(jnp.asarray(x_t), jnp.asarray(z[0, :3, :1].repeat(5, 1)), a_t, 1.0)
    np.testing.assert_allclose(np.asarray(back), x0, atol=1e-4)


def test_ddim_timesteps():
    np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 5), [999, 749, 500, 250, 0])
    # Every schedule starts from pure noise (T - 1); a single step is one jump from there.
    np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 1), [999])
    np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 2), [999, 0])
    np.testing.assert_array_equal(diffusion.ddim_timesteps(10, 10), np.arange(10)[::-1])
    with pytest.raises(ValueError, match="DDIM steps"):
        diffusion.ddim_timesteps(10, 11)


def test_loss_falls_on_a_tiny_batch():
    """Overfit: four clips, one per class, each one band profile held over its frames (a 1-D
    convolution over time cannot place a pattern in time from the class alone, so that a
    pattern could not be learnt where the noise hides the clip); the loss on fixed (t, noise)
    draws falls far below its start."""
    rng = np.random.default_rng(0)
    clips = [np.tile(rng.normal(size=(1, 8)), (16, 1)).astype(np.float32) for _ in range(4)]
    labels = np.array([0, 1, 2, 3], np.int32)
    cfg = generative.GeneratorConfig(crop=16, channels=(32, 32), steps=200, batch_size=4,
                                     learning_rate=3e-3, ema=0.0, log_every=100)
    model, state, history = generative.fit(clips, labels, 4, cfg)
    abar = jnp.asarray(diffusion.alpha_bars(diffusion.linear_betas(1000)), jnp.float32)
    x0 = jnp.asarray(np.stack(clips))
    key = jax.random.PRNGKey(42)

    @jax.jit
    def eval_loss(params):   # the mean over 8 fixed draws of (t, noise) per clip, and of the target's square
        losses, power = [], []
        for i in range(8):
            kt, kn = jax.random.split(jax.random.fold_in(key, i))
            t = jax.random.randint(kt, (4,), 0, 1000)
            noise = jax.random.normal(kn, x0.shape)
            losses.append(generative.loss_fn(model, params, x0, jnp.asarray(labels), t, noise, abar))
            power.append(jnp.mean(diffusion.v_target(x0, t, noise, abar) ** 2))
        return jnp.mean(jnp.stack(losses)), jnp.mean(jnp.stack(power))

    start, power = eval_loss(model.init(jax.random.PRNGKey(cfg.seed), x0[:1], jnp.zeros(1, jnp.int32),
                                        jnp.zeros(1, jnp.int32))["params"])
    end = float(eval_loss(state.online_params)[0])
    np.testing.assert_allclose(start, power, rtol=1e-5)   # the output layers start at zero
    assert end < 0.3 * start, (start, end, history)


def test_parameter_average_is_the_float64_moving_average():
    """The sampled parameters: avg_{k+1} = d_k avg_k + (1 - d_k) online_{k+1} with
    d_k = min(ema, (1 + k) / (10 + k)), against numpy in float64 over 12 steps."""
    import optax

    ema = 0.9
    model = generative.make_denoiser(4, 2, (8, 8))
    tx = optax.adam(1e-2)
    abar = jnp.asarray(diffusion.alpha_bars(diffusion.linear_betas(1000)), jnp.float32)
    state = generative.init_state(model, tx, 4, 8, seed=0)
    step = generative.make_train_step(model, tx, abar, ema)
    rng = np.random.default_rng(0)
    avg = [np.asarray(p, np.float64) for p in jax.tree_util.tree_leaves(state.params)]
    for k in range(12):
        x0 = jnp.asarray(rng.normal(size=(4, 8, 4)), jnp.float32)
        state, _ = step(state, x0, jnp.asarray([0, 1, 0, 1]), jax.random.PRNGKey(3))
        d = min(ema, (1 + k) / (10 + k))
        online = [np.asarray(p, np.float64) for p in jax.tree_util.tree_leaves(state.online_params)]
        avg = [d * a + (1 - d) * o for a, o in zip(avg, online)]
    got = [np.asarray(p) for p in jax.tree_util.tree_leaves(state.params)]
    assert int(state.step) == 12
    for g, want, o in zip(got, avg, online):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    assert max(np.abs(w - o).max() for w, o in zip(avg, online)) > 1e-3   # the average lags


def _structured_set(root, n_train=24, n_test=4):
    """Rock: mel rising from -70 to -10 dB over the bands, Jazz: falling; 1 dB noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(-70.0, -10.0, lab.N_MEL)
    profiles = {"Rock": np.r_[ramp, np.full(lab.N_CHROMA, 0.8)],
                "Jazz": np.r_[ramp[::-1], np.full(lab.N_CHROMA, 0.2)]}
    noise = np.r_[np.full(lab.N_MEL, 1.0), np.full(lab.N_CHROMA, 0.02)]
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            genre = ["Rock", "Jazz"][i % 2]
            name = lab.feature_file_name(f"{split[:2]}{i:04d}")
            x = profiles[genre][None, :] + rng.normal(0.0, noise, (24, lab.N_MEL + lab.N_CHROMA))
            lab.save_features(root / "fma_genre_spectrograms" / split / name, x.astype(np.float32))
            rows.append((name, genre))
        lab.write_genre_labels(root / "fma_genre_spectrograms" / f"{split}_labels.txt", rows)


@pytest.mark.parametrize("ddim_steps", [1, 2])
def test_few_step_samples_are_their_class_not_noise(structured_generator, ddim_steps):
    """A 1- and a 2-step sample (standardised units) lies near its class's mean training
    clip: its mean squared distance is under a quarter of pure Gaussian noise's, and of
    its distance to the other class's mean. (One step from t = 0 returned the noise.)"""
    gen, means, labels = structured_generator
    x = gen.sample(labels, seed=0, ddim_steps=ddim_steps, standardised=True)
    noise = np.random.default_rng(1).normal(size=x.shape)
    own = means[labels][:, None, :]
    other = means[labels[::-1]][:, None, :]
    d_sample = np.mean((x - own) ** 2)
    assert d_sample < 0.25 * np.mean((noise - own) ** 2)
    assert d_sample < 0.25 * np.mean((x - other) ** 2)


@pytest.fixture(scope="module")
def structured_generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    _structured_set(root / "data")
    tfrecords.prepare(root / "data", "fma_genre_spectrograms", root / "prepared",
                      tfrecords.PrepareOptions(shards=1, progress=False))
    prepared = root / "prepared" / "fma_genre_spectrograms"
    cfg = generative.GeneratorConfig(crop=16, channels=(16, 16), steps=200, batch_size=8,
                                     learning_rate=3e-3, ema=0.9, log_every=100)
    generative.train_generator(prepared, root / "gen", cfg, progress=False)
    clips, labels, _ = generative.load_training_clips(PreparedSet.open(prepared), 16)
    means = np.zeros((int(labels.max()) + 1, clips[0].shape[1]))
    for k in np.unique(labels):                # each class's mean frame, standardised
        means[k] = np.mean([c.mean(axis=0) for c, l in zip(clips, labels) if l == k], axis=0)
    return generative.Generator(root / "gen"), means, np.repeat(np.unique(labels), 4)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    write_genre_set(root / "data", n_train=40, n_test=8, lengths=(20, 40))
    tfrecords.prepare(root / "data", "fma_genre_spectrograms", root / "prepared",
                      tfrecords.PrepareOptions(shards=2, progress=False))
    prepared = root / "prepared" / "fma_genre_spectrograms"
    generative.train_generator(prepared, root / "gen", generative.GeneratorConfig(**TINY), progress=False)
    return root, prepared, generative.Generator(root / "gen")


def test_samples_depend_on_the_seed_only(generator):
    _, _, gen = generator
    labels = np.array([1, 5, 6, 8, 7])
    a = gen.sample(labels, seed=3, ddim_steps=4)
    b = gen.sample(labels, seed=3, ddim_steps=4, batch=2)
    c = gen.sample(labels, seed=4, ddim_steps=4)
    assert a.shape == (5, 16, 140) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)   # independent of the batching
    np.testing.assert_array_equal(a, gen.sample(labels, seed=3, ddim_steps=4))
    assert np.abs(a - c).mean() > 0.1


def _records(set_dir, split):
    import tensorflow as tf

    m = json.loads((set_dir / "manifest.json").read_text())
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    out = {}
    for sh in m["splits"][split]["shards"]:
        for raw in tf.data.TFRecordDataset(str(set_dir / sh["file"])).as_numpy_iterator():
            out[tf.io.parse_single_example(raw, spec)["id"].numpy().decode()] = raw
    return out


@pytest.mark.parametrize("balance", ["proportional", "balanced"])
def test_augmented_set(generator, tmp_path, balance):
    root, prepared, gen = generator
    m = generative.write_augmented_set(root / "gen", 0.5, tmp_path / "aug", seed=1, ddim_steps=4,
                                       balance=balance, progress=False)
    src = PreparedSet.open(prepared)
    n_train = src.count("train")
    total = round(0.5 * n_train)
    real = np.array([src.manifest["splits"]["train"]["per_class"][c] for c in src.classes])
    per_class = np.array([m["generated"]["per_class"][c] for c in src.classes])
    assert per_class.sum() == total and m["splits"]["train"]["count"] == n_train + total
    share = real / real.sum() if balance == "proportional" else (real > 0) / (real > 0).sum()
    assert np.all(np.abs(per_class - total * share) < 1) and np.all(per_class[real == 0] == 0)

    out = tmp_path / "aug" / "fma_genre_spectrograms"
    aug = PreparedSet.open(out, verify="sha256")
    # Validation and test are the same files; every real training record is there byte for byte.
    for split in ("validation", "test"):
        for a, b in zip(src.manifest["splits"][split]["shards"], aug.manifest["splits"][split]["shards"]):
            assert (prepared / a["file"]).read_bytes() == (out / b["file"]).read_bytes()
    before, after = _records(prepared, "train"), _records(out, "train")
    assert {k: v for k, v in after.items() if not k.startswith("gen-")} == before
    assert sum(k.startswith("gen-") for k in after) == total

    # Through the pipeline: lengths, padding, labels, and the generator's clips (float16).
    cfg = PipelineConfig(batch_size=16, max_length=aug.max_length(), view="fused")
    got = {}
    for batch in eval_batches(aug, "train", cfg):
        for i in np.flatnonzero(batch["mask"]):
            got[batch["id"][i].decode()] = (batch["features"][i], batch["lengths"][i], batch["label"][i])
    gen_ids = sorted(k for k in got if k.startswith("gen-"))
    assert all(got[k][1] == 16 and not got[k][0][16:].any() for k in gen_ids)
    labels = np.repeat(np.arange(len(per_class)), per_class)
    np.testing.assert_array_equal(np.bincount([got[k][2] for k in gen_ids], minlength=len(per_class)), per_class)
    want = gen.sample(labels, seed=1, ddim_steps=4).astype(np.float16).astype(np.float32)
    first = {c: np.flatnonzero(labels == k)[0] for k, c in enumerate(src.classes) if per_class[k]}
    for k in gen_ids:
        cls, idx = k[len("gen-"):].rsplit("-", 1)
        np.testing.assert_array_equal(got[k][0][:16], want[first[cls] + int(idx)])
    # A run reads it unchanged: its class counts include the generated clips, its statistics are the real ones.
    config = lab_config("fma_genre_spectrograms", "mel", cnn_model())
    config.data.prepared = str(tmp_path / "aug")
    run = runs.build_run(config)
    assert run.record["class_counts"] == list(real + per_class)
    assert run.record["feature_mean"] == list(src.train_statistics("mel")[0])


def test_clear_errors(generator, tmp_path, capsys):
    root, prepared, _ = generator
    src = PreparedSet.open(prepared)
    with pytest.raises(generative.GeneratorError, match="longer than every training clip"):
        generative.load_training_clips(src, src.max_length("train") + 4)
    with pytest.raises(generative.GeneratorError, match="multiple of 2"):
        generative.train_generator(prepared, tmp_path / "g", generative.GeneratorConfig(**{**TINY, "crop": 15}))
    for ratio in (0, -1):
        with pytest.raises(generative.GeneratorError, match="ratio must be positive"):
            generative.write_augmented_set(root / "gen", ratio, tmp_path / "aug")
    with pytest.raises(generative.GeneratorError, match="must differ"):
        generative.write_augmented_set(root / "gen", 0.5, root / "prepared")
    write_multitask_set(tmp_path / "data")
    tfrecords.prepare(tmp_path / "data", "multitask_dataset", tmp_path / "prep",
                      tfrecords.PrepareOptions(shards=1, progress=False))
    with pytest.raises(generative.GeneratorError, match="needs classes"):
        generative.load_training_clips(PreparedSet.open(tmp_path / "prep" / "multitask_dataset"), 16)
    assert cli_main(["generate", "train", "--prepared", str(tmp_path), "--set", "nope",
                     "--workdir", str(tmp_path / "g2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no prepared set 'nope'" in err[0]
    assert cli_main(["generate", "sample", "--workdir", str(root / "gen"), "--ratio", "0",
                     "--out", str(tmp_path / "o")]) == 2
    assert "ratio must be positive" in capsys.readouterr().err
