"""Doable's benchmark suite (issue 7). Run it all with `make bench` or `python -m bench`.

Not part of the test suite: each benchmark measures, repeats, and reports medians and ratios
against a baseline measured in the same run. See bench/README.md.
"""
