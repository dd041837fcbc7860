"""jaxmusic.augment: pure functions of (batch, rng), padding untouched, positions as a numpy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic import augment

B, T, F = 6, 40, 8
LENGTHS = np.array([40, 25, 10, 1, 33, 7], np.int32)
MASK = np.array([True, True, True, True, True, False])   # the last row is batch padding


def _batch(seed=0, targets=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    x[np.arange(T)[None, :] >= LENGTHS[:, None]] = 0.0
    b = {"features": jnp.asarray(x), "lengths": jnp.asarray(LENGTHS), "mask": jnp.asarray(MASK),
         "label": jnp.asarray(rng.integers(0, 3, B), jnp.int32)}
    if targets:
        b["targets"] = jnp.asarray(rng.random((B, 3)), jnp.float32)
    return b


CASES = {
    "crop": {"crop_frames": 12},
    "shift": {"time_shift": 9},
    "gain": {"gain_db": 6.0},
    "contrast": {"contrast": 0.5},
    "time_masks": {"time_masks": 2, "time_mask_width": 6},
    "freq_masks": {"freq_masks": 2, "freq_mask_width": 3},
    "mixup": {"mixup_alpha": 0.4},
    "all": {"crop_frames": 30, "time_shift": 5, "gain_db": 3.0, "contrast": 0.2, "time_masks": 1,
            "time_mask_width": 4, "freq_masks": 1, "freq_mask_width": 2, "mixup_alpha": 0.2},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pure_function_of_batch_and_rng_and_padding_untouched(name):
    cfg = CASES[name]
    fn = jax.jit(lambda b, r: augment.apply(b, r, cfg, num_classes=3))
    batch = _batch()
    a = fn(batch, jax.random.PRNGKey(1))
    again = fn(batch, jax.random.PRNGKey(1))
    other = fn(batch, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(a["features"]), np.asarray(again["features"]))
    assert not np.array_equal(np.asarray(a["features"]), np.asarray(other["features"]))
    assert not np.array_equal(np.asarray(a["features"]), np.asarray(batch["features"]))
    out, lengths = np.asarray(a["features"]), np.asarray(a["lengths"])
    assert np.all(lengths <= LENGTHS) if name != "mixup" and name != "all" else np.all(lengths >= 1)
    pad = np.arange(T)[None, :] >= lengths[:, None]
    assert np.all(out[pad] == 0.0)                     # frames >= length: zeros, as they came in
    np.testing.assert_array_equal(out[~MASK], np.asarray(batch["features"])[~MASK])   # batch padding


def test_crop_matches_numpy_reference():
    batch = _batch()
    start, window = augment.draw_crop(jax.random.PRNGKey(3), batch["lengths"], 12)
    start, window = np.asarray(start), np.asarray(window)
    np.testing.assert_array_equal(window, np.minimum(LENGTHS, 12))
    assert np.all(start >= 0) and np.all(start + window <= LENGTHS)
    out = augment.apply_crop(batch, jnp.asarray(start), jnp.asarray(window))
    x = np.asarray(batch["features"])
    for b in range(B):
        if not MASK[b]:
            continue
        ref = np.zeros((T, F), np.float32)
        ref[:window[b]] = x[b, start[b]:start[b] + window[b]]
        np.testing.assert_array_equal(np.asarray(out["features"][b]), ref)
        assert int(out["lengths"][b]) == window[b]


def test_shift_matches_numpy_roll():
    batch = _batch()
    shift = np.asarray(augment.draw_shift(jax.random.PRNGKey(4), batch["lengths"], 9))
    assert np.all(np.abs(shift) <= 9) and len(set(shift.tolist())) > 1
    out = np.asarray(augment.apply_shift(batch, jnp.asarray(shift))["features"])
    x = np.asarray(batch["features"])
    for b in range(B - 1):
        ref = x[b].copy()
        ref[:LENGTHS[b]] = np.roll(x[b, :LENGTHS[b]], shift[b], axis=0)
        np.testing.assert_array_equal(out[b], ref)


def _clip_means(x):
    """Each clip's mean over its valid frames and all features, in float64 (numpy)."""
    return np.array([x[b, :LENGTHS[b]].astype(np.float64).mean() for b in range(B)])


def test_masks_match_numpy_reference():
    """Masked values are the clip's mean (here dB-like, around -40: not 0 dB, the loudest)."""
    batch = _batch()
    batch["features"] = jnp.where(jnp.arange(T)[None, :, None] < batch["lengths"][:, None, None],
                                  batch["features"] * 10.0 - 40.0, 0.0)
    x = np.asarray(batch["features"])
    mean = _clip_means(x)
    ts, tw = map(np.asarray, augment.draw_masks(jax.random.PRNGKey(5), batch["lengths"], 2, 6))
    assert np.all(tw <= np.minimum(6, LENGTHS)[:, None]) and np.all(ts + tw <= LENGTHS[:, None]) and np.all(ts >= 0)
    fs, fw = map(np.asarray, augment.draw_masks(jax.random.PRNGKey(6), jnp.full((B,), F), 2, 3))
    assert np.all(fw <= 3) and np.all(fs + fw <= F)
    t_out = np.asarray(augment.apply_time_masks(batch, jnp.asarray(ts), jnp.asarray(tw))["features"])
    f_out = np.asarray(augment.apply_freq_masks(batch, jnp.asarray(fs), jnp.asarray(fw))["features"])
    for b in range(B - 1):
        ref_t, ref_f = x[b].copy(), x[b].copy()
        for s, w in zip(ts[b], tw[b]):
            ref_t[s:s + w] = mean[b]
        for s, w in zip(fs[b], fw[b]):
            ref_f[:LENGTHS[b], s:s + w] = mean[b]
        ref_t[LENGTHS[b]:] = 0.0                      # padding frames stay 0
        np.testing.assert_allclose(t_out[b], ref_t, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(f_out[b], ref_f, rtol=1e-6, atol=1e-5)
    assert np.any(tw[:B - 1] > 0) and np.any(fw[:B - 1] > 0)
    np.testing.assert_array_equal(t_out[~MASK], x[~MASK])
    np.testing.assert_array_equal(f_out[~MASK], x[~MASK])


@pytest.mark.parametrize("unit_offset", [0.0, -40.0])
def test_masks_in_the_jitted_chain_fill_with_each_clips_mean(unit_offset):
    """Through ``apply`` under jit, standardised-like (offset 0) and dB-like (offset -40):
    every masked value is its clip's numpy mean; the rest, padding included, is unchanged."""
    batch = _batch(seed=3)
    batch["features"] = jnp.where(jnp.arange(T)[None, :, None] < batch["lengths"][:, None, None],
                                  batch["features"] + unit_offset, 0.0)
    x = np.asarray(batch["features"])
    cfg = {"time_masks": 2, "time_mask_width": 8}
    out = np.asarray(jax.jit(lambda b, r: augment.apply(b, r, cfg))(batch, jax.random.PRNGKey(9))["features"])
    mean = _clip_means(x)
    changed = out != x
    assert changed[:B - 1].any() and not changed[~MASK].any()
    for b in range(B - 1):
        rows = np.flatnonzero(changed[b].any(axis=1))
        assert np.all(rows < LENGTHS[b])                       # never a padding frame
        np.testing.assert_allclose(out[b, rows], np.full((len(rows), F), mean[b]), rtol=1e-6, atol=1e-5)
    cfg = {"freq_masks": 2, "freq_mask_width": 3}
    out = np.asarray(jax.jit(lambda b, r: augment.apply(b, r, cfg))(batch, jax.random.PRNGKey(9))["features"])
    for b in range(B - 1):
        bands = np.flatnonzero((out[b] != x[b]).any(axis=0))
        np.testing.assert_allclose(out[b, :LENGTHS[b]][:, bands], mean[b], rtol=1e-6, atol=1e-5)
        assert np.all(out[b, LENGTHS[b]:] == 0.0)


def test_gain_contrast_in_db_units():
    batch = _batch()
    std = np.linspace(1.0, 4.0, F).astype(np.float32)      # features standardised by this std
    g = np.asarray(augment.draw_gain(jax.random.PRNGKey(7), B, 6.0))
    assert np.all(np.abs(g) <= 6.0)
    out = np.asarray(augment.apply_gain(batch, jnp.asarray(g), augment.feature_scale(std))["features"])
    x = np.asarray(batch["features"])
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    ref = np.where(valid[..., None] & MASK[:, None, None], x + g[:, None, None] / std, x)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    c = np.asarray(augment.draw_contrast(jax.random.PRNGKey(8), B, 0.5))
    out = np.asarray(augment.apply_contrast(batch, jnp.asarray(c))["features"])
    for b in range(B - 1):
        v = x[b, :LENGTHS[b]]
        np.testing.assert_allclose(out[b, :LENGTHS[b]], v.mean() + c[b] * (v - v.mean()), rtol=1e-5, atol=1e-5)


def test_mixup_soft_labels_targets_and_lengths():
    batch = _batch(targets=True)
    lam, partner = map(np.asarray, augment.draw_mixup(jax.random.PRNGKey(9), B, 0.4))
    assert sorted(partner.tolist()) == list(range(B)) and np.all((lam >= 0) & (lam <= 1))
    out = augment.apply_mixup(batch, jnp.asarray(lam), jnp.asarray(partner), num_classes=3)
    x, y, t = np.asarray(batch["features"]), np.asarray(batch["label"]), np.asarray(batch["targets"])
    eye = np.eye(3, dtype=np.float32)
    for b in range(B):
        l = lam[b] if (MASK[b] and MASK[partner[b]]) else 1.0
        np.testing.assert_allclose(np.asarray(out["features"][b]), l * x[b] + (1 - l) * x[partner[b]], atol=1e-6)
        np.testing.assert_allclose(np.asarray(out["label_soft"][b]), l * eye[y[b]] + (1 - l) * eye[y[partner[b]]],
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(out["targets"][b]), l * t[b] + (1 - l) * t[partner[b]], atol=1e-6)
        want = max(LENGTHS[b], LENGTHS[partner[b]]) if l < 1 else LENGTHS[b]
        assert int(out["lengths"][b]) == want


def test_settings_reject_unknown_and_negative():
    assert not augment.enabled(None) and not augment.enabled({"time_masks": 2})   # no width: off
    with pytest.raises(ValueError, match="unknown augment setting 'gain'"):
        augment.settings({"gain": 1.0})
    with pytest.raises(ValueError, match="augment.contrast must be >= 0"):
        augment.settings({"contrast": -0.1})


def test_train_step_applies_augmentation_with_its_own_key(tiny_prepared):
    """The step's loss with augment.* on equals the plain step's loss on the batch
    augment.apply gives with the step's key; the default config never augments."""
    from pathlib import Path

    from jaxmusic import parallel, runs, steps
    from jaxmusic.config import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "tiny" / "cnn.py", [f"--config.data.prepared={tiny_prepared}"])
    plain = runs.build_run(cfg)
    cfg_aug = load_config(repo / "configs" / "tiny" / "cnn.py",
                          [f"--config.data.prepared={tiny_prepared}", "--config.augment.time_masks=2",
                           "--config.augment.time_mask_width=5", "--config.augment.mixup_alpha=0.3",
                           "--config.augment.gain_db=3.0"])
    aug = runs.build_run(cfg_aug)
    mesh = parallel.make_mesh()
    state = steps.init_state(plain, mesh, 10)
    rng = np.random.default_rng(0)
    n, t, f = 8, plain.max_length, plain.num_features
    lengths = rng.integers(t // 2, t + 1, n).astype(np.int32)
    x = rng.normal(size=(n, t, f)).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0
    batch = {"features": jnp.asarray(x), "lengths": jnp.asarray(lengths), "mask": jnp.ones(n, bool),
             "label": jnp.asarray(rng.integers(0, len(plain.task.label_names), n), jnp.int32)}
    _, m_plain = jax.jit(steps.train_step_fn(plain))(state, batch)
    _, m_aug = jax.jit(steps.train_step_fn(aug))(state, batch)
    key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), steps.AUGMENT_STREAM)
    augmented = augment.apply(batch, key, cfg_aug.augment, num_classes=len(plain.task.label_names),
                              scale=augment.feature_scale(plain.normalization()[1]))
    assert "label_soft" in augmented
    _, m_ref = jax.jit(steps.train_step_fn(plain))(state, augmented)
    assert float(m_aug["loss"]) != float(m_plain["loss"])
    np.testing.assert_allclose(float(m_aug["loss"]), float(m_ref["loss"]), rtol=1e-5)
