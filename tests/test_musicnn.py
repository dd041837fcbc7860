"""The musicnn / VGG taggers in Flax against the original TensorFlow graphs of the musicnn wheel."""

from __future__ import annotations

import ast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmusic import frontend, pretrained
from jaxmusic.models import musicnn
from tests import audio_fixtures as af

needs_musicnn = pytest.mark.skipif(not pretrained.available(), reason="musicnn package not installed (.[pretrained])")


def _tf_graph_outputs(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities and penultimate features of the shipped graph (``.meta``), restored with tf.compat.v1."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    prefix = pretrained.checkpoint_prefix(name)
    meta = meta_graph_pb2.MetaGraphDef()
    with open(prefix + ".meta", "rb") as f:
        meta.ParseFromString(f.read())
    # The saved graph carries stale _output_shapes on its gradient ops, which today's
    # importer rejects; the shapes are hints only.
    for node in meta.graph_def.node:
        node.attr.pop("_output_shapes", None)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            # The output layer's input: the penultimate layer after (inference-mode) dropout.
            last = "model/dense_1/MatMul" if "musicnn" in name else "model/dense/MatMul"
            penultimate = graph.get_operation_by_name(last).inputs[0]
            probs, pen = sess.run([graph.get_tensor_by_name("model/Sigmoid:0"), penultimate],
                                  {"model/Placeholder:0": x, "model/Placeholder_2:0": False})
    return probs, pen.reshape(pen.shape[0], -1)


def _patches() -> np.ndarray:
    """Three 3 s patches of synthesised music (chords, clicks, noise) through the musicnn input recipe."""
    sr = frontend.MUSICNN.sample_rate
    audio = np.stack([af.chord("C", 3.0, sr=sr) + af.click_track(120, 3.0, sr=sr),
                      af.noise(3.0, sr=sr, amp=0.05, seed=1), af.song(3, 3.0, sr=sr)])
    feats, _ = frontend.musicnn_input(jnp.asarray(audio))
    return np.asarray(feats[:, :musicnn.PATCH_FRAMES])


@needs_musicnn
@pytest.mark.parametrize("name", ["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"])
def test_flax_port_matches_tensorflow_graph(name):
    x = _patches()
    assert x.shape == (3, 187, 96)
    module, variables = pretrained.tagger(name)
    out = module.apply(variables, jnp.asarray(x), train=False)
    probs_tf, pen_tf = _tf_graph_outputs(name, x)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(out["logits"])), probs_tf, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(out["penultimate"]), pen_tf, atol=1e-3, rtol=1e-4)
    assert probs_tf.std() > 1e-3   # the inputs really differ in what the taggers say


@needs_musicnn
def test_weight_import_covers_every_variable_and_statistic():
    arrays = pretrained.load_checkpoint_arrays("MTT_musicnn")
    variables = pretrained.load_variables("MTT_musicnn")
    leaves = jax.tree_util.tree_leaves(variables)
    assert sum(v.size for v in leaves) == sum(a.size for a in arrays.values())
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["bn_dense"]["var"]),
                                  arrays["batch_normalization_10/moving_variance"])
    np.testing.assert_array_equal(np.asarray(variables["params"]["conv_mid1"]["kernel"]),
                                  arrays["conv2d_5/kernel"][:, :, 0, :])


@needs_musicnn
def test_labels_match_package_configuration():
    source = (pretrained.package_dir() / "configuration.py").read_text()
    values = {t.id: ast.literal_eval(node.value) for node in ast.parse(source).body
              if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    assert tuple(values["MTT_LABELS"]) == pretrained.MTT_LABELS
    assert tuple(values["MSD_LABELS"]) == pretrained.MSD_LABELS
    assert (values["SR"], values["FFT_SIZE"], values["FFT_HOP"], values["N_MELS"]) == (
        frontend.MUSICNN.sample_rate, frontend.MUSICNN.n_fft, frontend.MUSICNN.hop_length, frontend.MUSICNN.n_mels)


def test_musicnn_input_matches_librosa():
    import librosa
    sr = 16000
    y = af.song(5, 2.0, sr=sr)
    ref = np.log10(10000 * librosa.feature.melspectrogram(y=y, sr=sr, hop_length=256, n_fft=512, n_mels=96).T + 1)
    feats, flen = frontend.musicnn_input(jnp.asarray(y[None]))
    assert feats.shape == (1,) + ref.shape and int(flen[0]) == ref.shape[0]
    np.testing.assert_allclose(np.asarray(feats[0]), ref, atol=2e-4, rtol=1e-4)
    # Padding: frames past the clip's length are zero, the valid frames are the clip's alone.
    padded = np.concatenate([y, np.full(4000, 0.3, np.float32)])
    feats2, flen2 = frontend.musicnn_input(jnp.asarray(padded[None]), jnp.asarray([len(y)]))
    assert int(flen2[0]) == ref.shape[0]
    np.testing.assert_allclose(np.asarray(feats2[0, :ref.shape[0]]), ref, atol=2e-4, rtol=1e-4)
    assert np.all(np.asarray(feats2[0, ref.shape[0]:]) == 0)


def test_patches_and_backbone_ignore_padding():
    rng = np.random.default_rng(0)
    x = rng.random((2, 400, 96)).astype(np.float32)
    lengths = np.array([400, 200])
    patches, valid = musicnn.split_patches(jnp.asarray(x), jnp.asarray(lengths), 187)
    assert patches.shape == (2, 3, 187, 96)
    np.testing.assert_array_equal(np.asarray(valid), [[True, True, True], [True, True, False]])
    np.testing.assert_array_equal(np.asarray(patches[1, 1, :13]), x[1, 187:200])
    assert np.all(np.asarray(patches[1, 1, 13:]) == 0)
    backbone = musicnn.MusicnnBackbone(arch="musicnn")
    variables = backbone.init(jax.random.PRNGKey(0), jnp.asarray(x[:1, :187]), jnp.asarray([187]), train=False)
    a = backbone.apply(variables, jnp.asarray(x[1:, :200]), jnp.asarray([200]), train=False)
    b = backbone.apply(variables, jnp.asarray(np.pad(x[1:, :200], ((0, 0), (0, 300), (0, 0)), constant_values=5.0)),
                       jnp.asarray([200]), train=False)
    assert a.shape == (1, 200)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@needs_musicnn
def test_tag_command_json_matches_librosa_pipeline(tmp_path, capsys):
    import json

    import librosa

    from jaxmusic import cli

    sr = 22050
    y = np.concatenate([af.chord("C", 3.5, sr=sr) + af.click_track(100, 3.5, sr=sr), af.noise(3.5, sr=sr, seed=4)])
    good = af.write_audio(tmp_path / "song.wav", y, sr=sr)
    bad = af.write_corrupt(tmp_path / "bad.wav")
    rc = cli.main(["tag", str(good), str(bad), "--model", "MTT_vgg", "--json", "--per-patch", "--top-k", "50"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 2 and "bad.wav" in lines[0] and "error" in lines[0]
    result = json.loads(lines[1])
    assert result["patches"] == 2 and len(result["per_patch"]) == 2
    # Reference: librosa's resampling and mel, the package's patching, the ported tagger.
    y16 = librosa.resample(y, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
    mel = np.log10(10000 * librosa.feature.melspectrogram(y=y16, sr=16000, hop_length=256, n_fft=512, n_mels=96).T + 1)
    patches = np.stack([mel[i * 187:(i + 1) * 187] for i in range(mel.shape[0] // 187)])
    module, variables = pretrained.tagger("MTT_vgg")
    probs = np.asarray(jax.nn.sigmoid(module.apply(variables, jnp.asarray(patches), train=False)["logits"]))
    got = {t["tag"]: t["probability"] for t in result["tags"]}
    want = dict(zip(pretrained.MTT_LABELS, probs.mean(axis=0)))
    assert set(got) == set(want)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-3)
    assert result["tags"][0]["probability"] >= result["tags"][-1]["probability"]


@pytest.mark.parametrize("kernel,pads,cin", [((7, 6), ((3, 3), (0, 0)), 1),    # timbral: time padded, freq valid
                                             ((9, 1), ((4, 4), (0, 0)), 1),    # temporal, SAME
                                             ((2, 3), ((0, 1), (1, 1)), 3),    # few channels, uneven padding
                                             ((3, 3), ((1, 1), (1, 1)), 8)])   # the flipped-kernel path
def test_tagger_convolution_gradients_match_numpy(kernel, pads, cin):
    """The taggers' convolution (jaxmusic.models.cnn.input_gradient, XLA's weight gradient):
    value, input and weight gradients against numpy sums over the padded input."""
    from jaxmusic.models.cnn import _NHWC

    kh, kw = kernel
    rng = np.random.default_rng(kh * kw + cin)
    x = rng.normal(size=(2, 12, 10, cin)).astype(np.float32)
    w = rng.normal(size=(kh, kw, cin, 5)).astype(np.float32)
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    t, f = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    windows = np.stack([[xp[:, i:i + t, j:j + f] for j in range(kw)] for i in range(kh)])  # [kh, kw, B, t, f, C]
    g = rng.normal(size=(2, t, f, 5)).astype(np.float32)
    y_ref = np.einsum("ijbtfc,ijco->btfo", windows, w)
    dw_ref = np.einsum("ijbtfc,btfo->ijco", windows, g)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i:i + t, j:j + f] += np.einsum("btfo,co->btfc", g, w[i, j])
    dx_ref = dxp[:, pads[0][0]:pads[0][0] + 12, pads[1][0]:pads[1][0] + 10]
    y, vjp = jax.vjp(lambda x, w: musicnn._conv2d(x, w, (1, 1), pads, dimension_numbers=_NHWC),
                     jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(g))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-4, atol=1e-3)
