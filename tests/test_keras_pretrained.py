"""The Keras-pretrained transfer study (experiments/keras_pretrained): a VGG16 base saved the way
`make_vgg16_base` saves it converts exactly, and gives Keras' features on real CIFAR-10 images."""

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("keras")

from experiments.keras_pretrained.compare_vgg16_transfer import cats_vs_dogs  # noqa: E402
from experiments.keras_pretrained.make_vgg16_base import build_classifier, save_base  # noqa: E402
from jaxcnn.cli import main as cli_main  # noqa: E402
from jaxcnn.keras import load_keras_h5  # noqa: E402
from jaxcnn.models.vgg import VGG16, preprocess_input  # noqa: E402
from jaxcnn.weights.store import restore_variables  # noqa: E402


def test_cats_vs_dogs_subsets_are_balanced_and_mixed(data_dir):
    x_train, y_train, x_test, y_test = cats_vs_dogs(data_dir, n_train=40, n_test=20)
    assert x_train.shape == (40, 32, 32, 3) and x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [20, 20] and np.bincount(y_test).tolist() == [10, 10]
    assert 0 < y_train[:20].sum() < 20  # shuffled: a first-N slice holds both classes


def test_saved_base_converts_to_keras_features_on_real_images(tmp_path, data_dir):
    _, _, x, _ = cats_vs_dogs(data_dir, n_train=2, n_test=16)
    base, _ = build_classifier(8)
    for i, w in enumerate(base.get_weights()):  # visible biases: a swapped role would show
        base.weights[i].assign(w + (0.05 if w.ndim == 1 else 0.0))
    h5, k3_path = save_base(base, str(tmp_path))
    assert cli_main(["convert-weights", "vgg16", h5, str(tmp_path / "conv")]) == 0
    params = restore_variables(tmp_path / "conv")["params"]
    k3 = load_keras_h5("vgg16", k3_path)["params"]
    for layer in params:
        for name in params[layer]:
            np.testing.assert_array_equal(params[layer][name], k3[layer][name])
    x_pre = preprocess_input(x.astype(np.float32))
    ref = base.predict(x_pre, verbose=0)
    ours = np.asarray(VGG16(include_top=False).apply({"params": params}, x_pre))
    assert ours.shape == ref.shape == (16, 1, 1, 512) and np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
