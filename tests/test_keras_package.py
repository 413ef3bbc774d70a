"""The Keras import's package layout: `jaxcnn.keras` builds on `jaxcnn.models` (the `keras:`
name prefix is a plugin the registry imports on first use), and the old paths still work."""

import os
import subprocess
import sys

import pytest

import jaxcnn.keras
import jaxcnn.weights
from jaxcnn import export
from jaxcnn.keras import builders
from jaxcnn.models import cnn, get_model, list_prefixes, register_prefix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=180,
                   env=dict(os.environ, PYTHONPATH=REPO))


def test_keras_prefix_loads_its_package_on_first_use():
    _python("import sys\n"
            "import jaxcnn.models as M\n"
            "assert 'jaxcnn.keras' not in sys.modules\n"
            "try:\n"
            "    M.get_model('keras:no/such/folder')\n"
            "except ValueError as e:\n"
            "    assert 'not a folder written by `jaxcnn import-keras`' in str(e), e\n"
            "assert 'jaxcnn.keras' in sys.modules\n")


@pytest.mark.parametrize("first", ["jaxcnn.keras", "jaxcnn.weights", "jaxcnn.weights.keras_h5",
                                   "jaxcnn.weights.keras_model", "jaxcnn.models.keras_graph"])
def test_every_entry_point_imports_first(first):
    _python(f"import {first}\nfrom jaxcnn.weights import from_keras, load_keras_h5, restore_variables\n")


def test_old_names_are_the_new_objects():
    for name in jaxcnn.weights.__all__:
        assert getattr(jaxcnn.weights, name) is getattr(jaxcnn.keras, name, None) or name in (
            "main_convert", "main_import", "read_metadata", "restore_variables", "save_variables")
    from jaxcnn.models.keras_graph import KerasGraph
    from jaxcnn.weights.keras_h5 import main_convert
    from jaxcnn.weights.keras_model import main_import

    assert KerasGraph is jaxcnn.keras.KerasGraph
    assert (main_convert, main_import) == (jaxcnn.weights.main_convert, jaxcnn.weights.main_import)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxcnn.weights.nope  # noqa: B018


def test_unknown_prefix_and_registered_prefix():
    assert "keras:" in list_prefixes()
    with pytest.raises(KeyError, match="unknown model name prefix 'nope:'.*keras:"):
        get_model("nope:x")
    register_prefix("twice:", lambda spec, **kw: cnn.MnistCNN(num_classes=int(spec), **kw))
    assert get_model("twice:4", dense_units=8) == cnn.MnistCNN(num_classes=4, dense_units=8)
    with pytest.raises(ValueError, match="one colon"):
        register_prefix("bad", lambda spec: None)


def test_one_set_of_keras_builders():
    assert export.EXPORT_BUILDERS is builders.EXPORT_BUILDERS
    assert set(builders.BUILDERS) == set(builders.EXPORT_BUILDERS) | {cnn.CnnLSTM, cnn.FrameBaseline}
    with pytest.raises(KeyError, match="no Keras builder for VGG16"):
        builders.keras_layers(None, get_model("vgg16"), None)
