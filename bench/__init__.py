"""Benchmarks: commands that start what they measure, drive it, and print figures.

Run from the repository root, e.g. ``python -m bench.graph``. They are not tests:
targets are judged by reading the printed tables, never by timed assertions.
"""
