"""`fusedops info`: the dict, the text, the JSON, and the probe's measurements."""
import json
import subprocess
import sys

import numpy as np
import pytest

import fusedops
from fusedops.apps import sysinfo as info_mod
from fusedops.apps.cli import main


def test_info_dict_without_probe():
    d = fusedops.info(probe_bandwidth=False)
    assert d["versions"]["numpy"] == np.__version__
    assert d["cpu"]["cores"] >= 1 and d["cpu"]["threads"] >= 1
    assert d["cpu"]["numba_threading_layer"] in ("omp", "tbb", "workqueue")
    assert d["backends"]["numpy"] == "available"
    assert "-fopenmp" in d["c"]["flags"] and d["c"]["compiler"]
    simd = d["c"]["simd"]  # the path that runs is compiled and supported here
    assert simd["path"] in simd["supported"] and set(simd["supported"]) <= set(simd["compiled"])
    assert simd["chosen_by"] in ("cpu", "build", "FUSEDOPS_SIMD")
    assert "probe" not in d


def test_probe_reports_every_cpu_backend(monkeypatch):
    # a small probe keeps the test fast; the real size comes from the cache size
    monkeypatch.setattr(info_mod, "probe_elements", lambda itemsize=4: 1 << 18)
    d = fusedops.info(repeat=2)
    results = d["probe"]["results"]
    for b in ("numpy", "numba", "c"):
        assert results[b]["n"] == 1 << 18
        # measured, positive, finite GB/s (no floor: a loaded machine can be arbitrarily slow)
        assert 0 < results[b]["copy"] < float("inf") and 0 < results[b]["triad"] < float("inf")


def test_probe_size_is_beyond_the_last_level_cache():
    n = info_mod.probe_elements(4)
    llc = info_mod.last_level_cache_bytes()
    assert n * 4 >= min(8 * llc, info_mod._available_memory_bytes() // 12)
    assert llc >= 1 << 20


def test_measure_bandwidth_counts_bytes():
    r = info_mod.measure_bandwidth("numpy", "triad", n=100_000, repeat=3)
    assert r["n"] == 100_000 and r["kernel"] == "triad"
    assert r["gbps"] == pytest.approx(3 * 4 * 100_000 / r["seconds_median"] / 1e9)
    with pytest.raises(ValueError, match="kernel"):
        info_mod.measure_bandwidth("numpy", "scale", n=10)


def test_cli_info_json(capsys):
    assert main(["info", "--json", "--no-probe"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"versions", "cpu", "backends", "c", "cuda"}


def test_cli_info_text(capsys):
    assert main(["info", "--no-probe"]) == 0
    out = capsys.readouterr().out
    assert "cpu:" in out and "cuda device:" in out and "backends:" in out
    assert "c SIMD path: " in out


def test_cli_bad_argument_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "fusedops", "info", "--repeat", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_reference_bandwidth_counts_write_allocate(monkeypatch):
    figures = {("numba", "copy"): 20.0, ("c", "copy"): 30.0, ("cuda", "copy"): 2000.0}
    monkeypatch.setattr(info_mod, "probe", lambda b, k="copy", *a, **kw: figures[(b, k)])
    info_mod.reference_bandwidth.cache_clear()
    try:
        assert info_mod.reference_bandwidth("cpu") == pytest.approx(45.0)  # best copy x 3/2
        assert info_mod.reference_bandwidth("gpu") == pytest.approx(2000.0)
        with pytest.raises(ValueError, match="side"):
            info_mod.reference_bandwidth("tpu")
    finally:
        info_mod.reference_bandwidth.cache_clear()
