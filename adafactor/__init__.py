"""Adafactor (Shazeer & Stern, ICML 2018): the optimizer, its schedules and state accounting.

Depends on torch only.
"""

from .optimizer import Adafactor
from .schedules import paper_step_size
from .state_bytes import optimizer_state_bytes

__all__ = ["Adafactor", "optimizer_state_bytes", "paper_step_size"]
