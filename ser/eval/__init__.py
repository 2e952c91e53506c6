"""Evaluation of emotion systems: metrics, scoring of a system dir, significance, the results report."""
