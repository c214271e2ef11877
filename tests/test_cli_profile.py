"""`fusedops profile` from the command line: exit codes, the table, JSON / CSV / PNG files, and
usage errors (not tracebacks) for bad arguments."""
import csv
import json
import subprocess
import sys

import pytest

from fusedops import backends
from fusedops.apps import profile, profile_ops, sysinfo
from fusedops.apps.cli import main

CPU = ",".join(b for b in ("numpy", "numba", "c") if backends.backend_unavailable_reason(b) is None)
FAST = ["--repeat", "2", "--min-time", "0.0005", "--no-progress"]


def _profile(*extra):
    return main(["profile", "--ops", "copy,triad", "--sizes", "1000,3k", "--backends", CPU,
                 *FAST, *extra])


@pytest.fixture
def small_probe(monkeypatch):
    """The probe at a small size (its real size is 8x the last-level cache)."""
    sysinfo.probe.cache_clear()
    sysinfo.reference_bandwidth.cache_clear()
    monkeypatch.setattr(sysinfo, "probe_elements", lambda itemsize=4: 1 << 16)
    yield
    sysinfo.probe.cache_clear()
    sysinfo.reference_bandwidth.cache_clear()


def test_table_has_every_column_and_row(capsys, small_probe):
    assert _profile() == 0
    out = capsys.readouterr().out
    for col in ("size", "backend", "median", "spread", "GB/s", "%probe", "vs numpy"):
        assert col in out
    for op in ("copy:", "triad:"):
        assert op in out
    body = [line.split() for line in out.splitlines() if line.strip().startswith(("1k", "3k"))]
    assert len(body) == 2 * 2 * len(CPU.split(","))
    assert {row[2] for row in body} == set(CPU.split(","))
    numpy_rows = [row for row in body if row[2] == "numpy"]
    assert all(row[-1] == "1.00x" for row in numpy_rows)
    assert all(row[-2].endswith("%") and row[-2] != "-" for row in body)  # probe measured


def test_json_csv_and_plot_files(tmp_path, capsys):
    j, c, p = tmp_path / "p.json", tmp_path / "p.csv", tmp_path / "p.png"
    assert _profile("--json", str(j), "--csv", str(c), "--plot", str(p), "--no-probe") == 0
    data = json.loads(j.read_text())
    assert data["settings"]["sizes"] == [1000, 3000]
    assert data["settings"]["ops"] == ["copy", "triad"]
    assert data["machine"]["cpu"] and data["machine"]["threads"] >= 1
    rows = data["results"]
    assert len(rows) == 2 * 2 * len(CPU.split(","))
    for r in rows:
        for key in ("op", "backend", "size", "n", "median_s", "spread", "gbps", "bytes",
                    "fraction_of_probe", "speedup_vs_numpy", "samples_s", "transfers"):
            assert key in r
        assert r["median_s"] > 0 and len(r["samples_s"]) == 2
        assert r["fraction_of_probe"] is None  # --no-probe
    with open(c) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert set(table[0]) == set(profile.CSV_FIELDS)
    assert float(table[0]["median_s"]) == pytest.approx(rows[0]["median_s"])
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_json_to_stdout(capsys):
    assert main(["profile", "--ops", "copy", "--sizes", "500", "--backends", "numpy",
                 "--json", "-", "--no-probe", *FAST]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in data["results"]] == ["numpy"]


def test_float64_counts_eight_byte_elements(tmp_path):
    j = tmp_path / "p.json"
    assert main(["profile", "--ops", "copy", "--sizes", "100", "--backends", "numpy", "--dtype",
                 "float64", "--json", str(j), "--no-probe", *FAST]) == 0
    (row,) = json.loads(j.read_text())["results"]
    assert row["dtype"] == "float64" and row["bytes"] == 1600


@pytest.mark.parametrize("argv,message", [
    (["--ops", "nosuchop"], "unknown op 'nosuchop'"),
    (["--backends", "fortran"], "unknown backend 'fortran'"),
    (["--sizes", "0"], "positive"),
    (["--sizes", "-5"], "positive"),
    (["--sizes", "1.5"], "positive whole"),
    (["--sizes", "lots"], "positive size"),
    (["--sizes", "1e15"], "GiB"),
    (["--repeat", "0"], "positive integer"),
    (["--dtype", "float16"], "invalid choice"),
    (["--ops", ""], "comma-separated"),
    (["--json", "/no/such/folder/p.json"], "no such folder"),
    (["--plot", "/no/such/folder/p.png"], "no such folder"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", *argv, *FAST])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fusedops profile" in err and message in err


def test_unavailable_backends_are_usage_errors(capsys, monkeypatch):
    monkeypatch.setattr(profile_ops, "torch_module", lambda: None)  # as on a machine without PyTorch
    assert "torch" not in profile.available_backends()
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--backends", "torch", *FAST])
    assert exc.value.code == 2 and "PyTorch is not installed" in capsys.readouterr().err
    if backends.backend_unavailable_reason("cuda") is not None:
        with pytest.raises(SystemExit):
            main(["profile", "--backends", "cuda", *FAST])
        assert "backend 'cuda' is not available" in capsys.readouterr().err


def test_console_script_usage_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "fusedops", "profile", "--sizes", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "usage:" in proc.stderr
