"""The kernel table of fusedops._dispatch: every declared kernel is served by every backend under
its name, and the table is the only way the ops name a kernel."""
import ast
import importlib
from pathlib import Path

import fusedops
from fusedops import _dispatch, backends, reference


def test_every_declared_kernel_exists_in_every_backend():
    names = [k.name for k in _dispatch.KERNELS]
    assert len(set(names)) == len(names)
    for k in _dispatch.KERNELS:
        assert 1 <= k.outputs, k
        assert callable(getattr(reference, k.name)), k
        cpu = importlib.import_module(f"fusedops.kernels.cpu.{k.family}")
        assert callable(getattr(cpu, k.name)), k
        cuda = importlib.import_module(f"fusedops.kernels.cuda.{k.family}")  # no GPU needed
        assert callable(getattr(cuda, k.name)), k
        if backends.backend_unavailable_reason("c") is None:
            from fusedops._c import lib

            assert hasattr(lib, f"fo_{k.name}_f32") or hasattr(lib, f"fo_{k.name}"), k


def test_ops_launch_declared_kernels_only():
    """launch(backend, KERNEL, arrays, ...): no string names, no writes= left in the callers."""
    package = Path(fusedops.__file__).parent
    calls = 0
    for path in [*package.glob("ops/*.py"), package / "optim.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "launch":
                calls += 1
                assert not any(isinstance(a, ast.Constant) for a in node.args), path.name
                assert {kw.arg for kw in node.keywords} <= {"sizes", "scalars", "dtype"}, path.name
    assert calls >= 13

