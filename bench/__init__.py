"""Benchmarks: ``make bench`` (``python -m bench``) runs them all; ``python -m bench NAME`` one.

They print figures and ratios measured in the same run; they assert nothing.
"""
