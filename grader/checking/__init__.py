"""Judging captured answers in the grader's own process: loading them without trusting them,
comparing values, independent NumPy computations, the checks and the score."""
