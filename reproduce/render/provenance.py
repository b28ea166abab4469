"""What the results of a table were run with (scale, corpus, BLEU recipe, steps), as text.

Several distinct values of one field mean the table mixes settings; ``joined`` says so loudly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from reproduce.render.collapse_bleu import DIVERGED

MIXED = " (MIXED: results come from different settings)"


def provenance(results: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Distinct scale / corpus / recipe / signature / steps / arithmetic (experiments.identity)
    values over the results (several = mixed)."""
    seen: dict[str, dict[str, None]] = {
        k: {} for k in ("scale", "corpus", "recipe", "signature", "tokenized_signature", "steps",
                        "numerics")
    }
    for r in results:
        recipe = r.get("bleu_recipe") or {}
        seen["scale"][str(r.get("scale", "?"))] = None
        corpus = r.get("corpus") or recipe.get("corpus")
        if corpus:
            seen["corpus"][str(corpus)] = None
        if recipe:
            seen["recipe"][recipe_text(recipe)] = None
        if r.get("bleu_signature"):
            seen["signature"][str(r["bleu_signature"])] = None
        if r.get("tokenized_bleu_signature"):
            seen["tokenized_signature"][str(r["tokenized_bleu_signature"])] = None
        if numerics := recorded_numerics(r):
            seen["numerics"][numerics] = None
        if r.get("steps") is not None and r.get("status") != DIVERGED:  # diverged cells stop early
            seen["steps"][str(r["steps"])] = None
    return {k: list(v) for k, v in seen.items()}


def recorded_numerics(result: dict[str, Any]) -> str:
    """The arithmetic a result ran on (experiments.identity), or "" when it was not recorded."""
    return str(((result.get("identity") or {}).get("recorded") or {}).get("numerics") or "")


def recorded_commit(result: dict[str, Any]) -> str:
    """The git commit of the code a result ran on (with "+dirty" when its tree had changes),
    or "" when it was not recorded."""
    recorded = (result.get("identity") or {}).get("recorded") or {}
    commit = recorded.get("git_commit")
    return "" if not commit else str(commit) + ("+dirty" if recorded.get("git_dirty") else "")


PROVENANCE_COLUMNS = ("numerics", "git_commit")


def provenance_columns(results: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The CSV columns that say what a line's results ran on: the arithmetic and the code
    commit, each its distinct values joined (flagged MIXED when there are several)."""
    results = list(results)
    return {"numerics": distinct_joined(recorded_numerics(r) for r in results),
            "git_commit": distinct_joined(recorded_commit(r) for r in results)}


def distinct_joined(values: Iterable[str]) -> str:
    """The distinct non-empty values, `joined` ("" when there are none)."""
    return joined(list(dict.fromkeys(v for v in values if v)), "")


def csv_text(text: str) -> str:
    """One CSV field, quoted when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def arithmetic_line(p: dict[str, list[str]]) -> str:
    """Which arithmetic the results ran on (experiments.identity), as a sentence."""
    return (f"Arithmetic (torch; CPU instruction set; CPU): "
            f"{joined(p.get('numerics') or [], 'not recorded')}; other CPUs give other digits "
            "(docs/calibration.md section 6).")


def joined(values: Sequence[str], missing: str = "unknown") -> str:
    """The values joined by "; ", flagged MIXED when there is more than one."""
    text = "; ".join(values) if values else missing
    return text + (MIXED if len(values) > 1 else "")


def recipe_text(recipe: dict[str, Any]) -> str:
    """``embedded valid split (200 sentences), beam 4, length penalty 0.6`` from bleu_recipe."""
    where = " ".join(str(recipe[k]) for k in ("corpus", "split") if recipe.get(k)) + " split"
    sentences = recipe.get("sentences") or recipe.get("max_sentences")
    if sentences:
        where += f" ({sentences} sentences)"
    if recipe.get("decode") == "greedy":
        search = "greedy decoding"
    else:
        beam, penalty = recipe.get("beam", "?"), recipe.get("length_penalty", "?")
        search = f"beam {beam}, length penalty {penalty}"
    return f"{where}, {search}"
