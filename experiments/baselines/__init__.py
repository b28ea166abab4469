"""Baseline optimizers that the Adafactor reproduction compares against."""
