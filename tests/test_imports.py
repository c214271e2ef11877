"""The package's import structure (DESIGN.md "Layout", STYLE.md 15).

A static walk over every module of fusedops and fusedops.kernels (with `ast`, importing none of
them) collects every import statement, at module level or inside a function (a lazy import
that closes a circle is still a circle: two modules that cannot be read, tested or moved one
without the other). On that graph:
- no import circle;
- layers: the core (everything but fusedops.apps, fusedops.__main__ and the optional adapters
  fusedops.torch / sklearn / distributed) imports neither the apps nor an adapter; adapters may
  import the core but not the apps or each other; only the apps import adapters;
- nothing imports a name from the module it moved out of (backends.MOVED, _flat.MOVED: still
  importable there for outside code, with a DeprecationWarning).
The root package's PEP 562 `__getattr__` reaches ops, nn, apps, ... by name through
importlib, not through import statements: it is the one door from the core to the apps, and
the subprocess tests below check that `import fusedops` loads none of them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from import_graph import (layer, find_cycles, import_graph, imports_of, layer_violations,
                          moved_imports, package_modules)

LAZY_SUBPACKAGES = ("ops", "optim", "nn", "data")


# --------------------------------------------------------------------------- the walker itself

def _fake_package(tmp_path, files: dict) -> dict:
    """package_modules() of a fake package `fusedops` made of `files` {relative path: source}."""
    modules = {}
    for rel, src in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(src))
        parts = ["fusedops", *Path(rel).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return modules


def _graph_of(tmp_path, files: dict) -> dict:
    modules = _fake_package(tmp_path, files)
    return {n: imports_of(n, p, k, modules) for n, (p, k) in modules.items()}


def test_walker_sees_lazy_relative_and_from_imports(tmp_path):
    g = _graph_of(tmp_path, {
        "__init__.py": "from .core import f\n",
        "core.py": "def f():\n    from .apps import cli\n    from . import __version__\n",
        "apps/__init__.py": "",
        "apps/cli.py": "from ..core import f\nimport fusedops.nn.models as m\nimport numpy\n",
        "nn/__init__.py": "",
        "nn/models.py": "from .. import core\nfrom ..torch import Adam\n",
    })
    assert g["fusedops"] == {"fusedops.core"}
    assert g["fusedops.core"] == {"fusedops.apps.cli", "fusedops"}
    assert g["fusedops.apps.cli"] == {"fusedops.core", "fusedops.nn.models"}
    assert g["fusedops.nn.models"] == {"fusedops.core", "fusedops.torch"}
    assert find_cycles(g) == [["fusedops", "fusedops.apps.cli", "fusedops.core", "fusedops.nn.models"]]
    assert layer_violations(g) == [("fusedops.core", "fusedops.apps.cli"),
                                   ("fusedops.nn.models", "fusedops.torch")]


def test_walker_finds_a_circle_through_a_lazy_import(tmp_path):
    g = _graph_of(tmp_path, {
        "__init__.py": "",
        "demo.py": "def run():\n    from . import sections\n",
        "sections.py": "def quad():\n    from .demo import run\n",
        "other.py": "from . import demo\n",
    })
    assert find_cycles(g) == [["fusedops.demo", "fusedops.sections"]]


def test_walker_lets_apps_import_adapters_and_adapters_import_the_core(tmp_path):
    g = _graph_of(tmp_path, {
        "__init__.py": "",
        "ops.py": "",
        "torch/__init__.py": "from .optim import Adam\n",
        "torch/optim.py": "from .. import ops\n",
        "sklearn.py": "from .torch import Adam\n",
        "apps/__init__.py": "",
        "apps/train.py": "from ..torch import Adam\nfrom ..sklearn import X\n",
    })
    assert layer_violations(g) == [("fusedops.sklearn", "fusedops.torch")]


# --------------------------------------------------------------------------- the package

def test_every_module_is_walked():
    mods = package_modules()
    for name in ("fusedops", "fusedops.backends", "fusedops.ops.optim", "fusedops.nn.models",
                 "fusedops.apps.cli", "fusedops.kernels.cpu.optim", "fusedops.kernels.cuda.optim"):
        assert name in mods


def test_no_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_core_never_imports_the_apps_or_an_adapter():
    bad = layer_violations(import_graph())
    assert not bad, "layering broken (importer -> imported):\n" + "\n".join(
        f"{a} -> {b}" for a, b in bad)


def test_walker_finds_imports_of_moved_names(tmp_path):
    modules = _fake_package(tmp_path, {
        "__init__.py": "", "backends.py": "", "checks.py": "",
        "ops.py": "from .backends import resolve_backend, check_real\n"
                  "def f():\n    from fusedops.backends import check_int\n"})
    moved = {"fusedops.backends": {"check_real": "fusedops.checks", "check_int": "fusedops.checks"}}
    assert moved_imports(modules, moved) == [
        "fusedops.ops:1: from fusedops.backends import check_real -> from fusedops.checks "
        "import check_real",
        "fusedops.ops:3: from fusedops.backends import check_int -> from fusedops.checks "
        "import check_int"]


def test_no_module_imports_a_name_from_where_it_used_to_live():
    from fusedops import _flat, backends

    found = moved_imports(package_modules(), {"fusedops.backends": backends.MOVED,
                                              "fusedops._flat": _flat.MOVED})
    assert not found, "imports from a name's old home:\n" + "\n".join(found)


def test_moved_names_still_import_from_their_old_home_with_a_warning():
    from fusedops import _arrays, _flat, backends, checks

    with pytest.warns(DeprecationWarning,
                      match="fusedops.backends.check_real has moved: import it from fusedops.checks"):
        assert backends.check_real is checks.check_real
    with pytest.warns(DeprecationWarning, match="fusedops.backends.is_device_array has moved"):
        assert backends.is_device_array is _arrays.is_device_array
    with pytest.warns(DeprecationWarning, match="fusedops._flat.host_copy has moved"):
        assert _flat.host_copy is _arrays.host_copy
    with pytest.raises(AttributeError, match="no attribute 'check_nothing'"):
        backends.check_nothing  # noqa: B018


def test_kernels_import_nothing_from_the_api():
    graph = import_graph()
    bad = {(m, t) for m, ts in graph.items() if m.startswith("fusedops.kernels")
           for t in ts if not t.startswith("fusedops.kernels")}
    assert not bad, sorted(bad)


# --------------------------------------------------------------------------- import fusedops

def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_fusedops_loads_no_app_and_no_subpackage():
    out = json.loads(_run("""
        import json, sys
        import fusedops
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("fusedops", "numba", "numpy")))))
    """))
    assert not [m for m in out if layer(m) == "apps"], out
    for sub in LAZY_SUBPACKAGES + ("kernels",):
        assert f"fusedops.{sub}" not in out, out
    assert out == ["fusedops"], out  # not even NumPy or the JIT: they come with the first use


def test_subpackages_and_info_are_reachable_after_import_fusedops():
    out = json.loads(_run("""
        import json, sys
        import fusedops
        names = dir(fusedops)
        got = {"dir": [n for n in ("ops", "optim", "nn", "data", "apps", "info") if n in names],
               "ops": fusedops.ops.adam_step.__module__, "optim": fusedops.optim.Adam.__name__,
               "nn": fusedops.nn.MLP.__name__, "data": fusedops.data.load_digits.__name__,
               "info": fusedops.info.__module__, "apps": fusedops.apps.__name__,
               "version": fusedops.__version__}
        print(json.dumps(got))
    """))
    assert out == {"dir": ["ops", "optim", "nn", "data", "apps", "info"],
                   "ops": "fusedops.ops.optim", "optim": "Adam", "nn": "MLP",
                   "data": "load_digits", "info": "fusedops.apps.sysinfo", "apps": "fusedops.apps",
                   "version": out["version"]}
    assert out["version"] and out["version"][0].isdigit()


def test_unknown_attribute_is_an_attribute_error():
    import fusedops

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        fusedops.no_such_thing  # noqa: B018
    assert not hasattr(fusedops, "kernel")


def test_adapter_whose_extra_is_missing_names_the_extra(tmp_path):
    """An adapter that needs a missing dependency: `fusedops.<adapter>` raises ImportError with
    the pip command. The real adapter is used where it exists (it comes first on the package
    path); else a stand-in that imports its dependency as the real one does."""
    for adapter, dep in (("torch", "torch"), ("sklearn", "sklearn"), ("distributed", "mpi4py")):
        (tmp_path / adapter).mkdir()
        (tmp_path / adapter / "__init__.py").write_text(f"import {dep}\n")
    out = json.loads(_run(f"""
        import json, sys
        for dep in ("torch", "sklearn", "mpi4py"):
            sys.modules[dep] = None  # as if not installed: `import dep` raises ImportError
        import fusedops
        fusedops.__path__.append({str(tmp_path)!r})
        out = {{}}
        for name in ("torch", "sklearn", "distributed"):
            try:
                getattr(fusedops, name)
            except ImportError as exc:
                out[name] = str(exc)
        print(json.dumps(out))
    """))
    assert set(out) == {"torch", "sklearn", "distributed"}, out
    for name, extra in (("torch", "torch"), ("sklearn", "sklearn"), ("distributed", "mpi")):
        assert f"pip install 'fusedops[{extra}]'" in out[name] and f"fusedops.{name}" in out[name]


def test_adapter_missing_from_this_build_says_so(monkeypatch):
    import fusedops

    monkeypatch.setitem(fusedops._ADAPTERS, "hologram", ("holopy", "holo"))
    with pytest.raises(ImportError, match="fusedops.hologram is not part of this installation"):
        fusedops.hologram  # noqa: B018
