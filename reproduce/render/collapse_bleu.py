"""The secondary collapse rule: a cell collapsed when its BLEU is below a quarter of the best BLEU
in its column (diverged counts as 0). Applied to our numbers and to the paper's separately."""

from __future__ import annotations

from collections.abc import Mapping

from experiments.schema import Status

COLLAPSE_FRACTION = 0.25
DIVERGED = Status.DIVERGED  # a BLEU entry of a run that diverged: counts as 0


def bleu_value(bleu: float | str | None) -> float | None:
    """A BLEU entry as a number: ``"diverged"`` -> 0.0, None (not run) -> None."""
    if bleu is None:
        return None
    if bleu == DIVERGED:
        return 0.0
    if isinstance(bleu, str):
        raise ValueError(f"BLEU entry must be a number, 'diverged' or None, got {bleu!r}")
    return float(bleu)


def collapsed_cells(bleu_by_cell: Mapping[str, float | str | None]) -> dict[str, bool | None]:
    """For the cells of ONE column: cell -> collapsed? (None where the cell has no number).

    Diverged cells always count as collapsed, even when every cell of the column diverged.
    """
    values = {key: bleu_value(b) for key, b in bleu_by_cell.items()}
    known = [v for v in values.values() if v is not None]
    best = max(known, default=0.0)
    out: dict[str, bool | None] = {}
    for key, bleu in bleu_by_cell.items():
        value = values[key]
        if value is None:
            out[key] = None
        else:
            out[key] = bleu == DIVERGED or value < COLLAPSE_FRACTION * best
    return out
