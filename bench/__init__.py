"""carbonlab's benchmark suite against the tools people use today.

One command runs it all: ``.venv/bin/python -m bench`` (see bench/README.md); it writes
docs/benchmarks.md. ``bench_core.py``, ``bench_cell.py`` and ``bench_pytest.py`` are the older
carbonlab-only scripts; they still run on their own.
"""
