"""Stage `distil`: a shallower student that gives the fine-tuned teacher's vectors.

The student keeps the teacher's width, vocabulary and embeddings and a chosen
few of its transformer layers (copied, not re-initialised), then is trained
(fit.py) to match the teacher's vectors on the catalogue's item texts and on
query-like texts. Query time on a CPU is roughly linear in the layer count,
so the layers kept are the speed dial. Zero layers is allowed: what is left
is the embedding table, position embeddings and LayerNorm, mean-pooled, a
learned bag of words that costs almost nothing to run.
"""

from __future__ import annotations

from typing import Any, Sequence


def shallow_copy(model_dir: str, layers: Sequence[int]) -> Any:
    """The transformers model in ``model_dir`` with only ``layers`` (teacher indices, in order) kept."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir)
    count = model.config.num_hidden_layers
    if any(not 0 <= i < count for i in layers) or list(layers) != sorted(set(layers)):
        raise ValueError(f"layers must be distinct increasing indices below {count}, got {list(layers)}")
    model.encoder.layer = torch.nn.ModuleList(model.encoder.layer[i] for i in layers)
    model.config.num_hidden_layers = len(layers)
    return model
