"""The benchmark harness (issue 4): `python -m bench.run`, described in bench/README.md."""
