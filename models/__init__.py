"""The paper's model: Transformer presets, label-smoothed loss, greedy/beam search and BLEU.

Submodules: ``models.presets`` (``model_config``), ``models.transformer`` (``Transformer``),
``models.loss``, ``models.decoding``, ``models.bleu``, ``models.lightning_module``.
"""

from models.config import ModelConfig
from models.presets import model_config

__all__ = ["ModelConfig", "model_config"]
