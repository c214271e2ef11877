"""fusedops.nn's model registry: the classes a model file may name (the allow-list of load)."""
import json

import numpy as np
import pytest

import fusedops.nn
from fusedops.nn import MLP, Autoencoder, Model
from fusedops.nn.registry import model_class, model_classes


class TinyMLP(MLP):
    """A user's subclass: registered by being defined."""


def _saved(tmp_path, model):
    model.fit(np.random.default_rng(0).standard_normal((8, 4)), np.arange(8) % 3, epochs=1,
              batch_size=4, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    return path


def test_the_library_models_are_registered_by_name():
    assert model_class("MLP") is MLP and model_class("Autoencoder") is Autoencoder
    assert "Model" not in model_classes()  # the base class is not a model a file can name


def test_a_subclass_round_trips_as_itself(tmp_path):
    m = TinyMLP([4, 5, 3], seed=1, backend="numpy")
    back = fusedops.nn.load(_saved(tmp_path, m))
    assert type(back) is TinyMLP
    np.testing.assert_array_equal(back.flat.data, m.flat.data)


def _with_class(tmp_path, path, name):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["class"] = name
    arrays["__meta__"] = np.array(json.dumps(meta))
    out = tmp_path / "edited.npz"
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("name", ["Model", "os.system", "Sequential", 3])
def test_a_file_naming_an_unregistered_class_is_refused(tmp_path, name):
    path = _with_class(tmp_path, _saved(tmp_path, MLP([4, 5, 3], backend="numpy")), name)
    with pytest.raises(ValueError, match=f"unknown model class {name!r}.*known: .*MLP"):
        fusedops.nn.load(path)


def test_a_foreign_class_cannot_take_a_library_models_name():
    with pytest.raises(TypeError, match="'MLP' is the name of fusedops.nn.mlp.MLP"):
        type("MLP", (Model,), {"__module__": "user_code"})
    assert model_class("MLP") is MLP


def test_a_redefined_user_class_replaces_the_old_one():
    first = type("Redefined", (MLP,), {"__module__": "notebook"})
    second = type("Redefined", (MLP,), {"__module__": "notebook"})
    assert first is not second and model_class("Redefined") is second
