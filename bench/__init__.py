"""Benchmarks of the refuge stack (issue 9): `make bench` or `python -m bench [--quick]`.

Every scenario runs the real services as processes against a redis-server of the benchmark's
own, and every figure is also given as a ratio to a baseline measured in the same run, because
absolute times on shared machines drift.
"""
