"""adafactor package."""
