"""Smaller models: magnitude pruning (an optax transformation), quantization-aware training
(int8 fake quantization) and the `--prune` / `--quantize` options. Post-training quantization
happens on export (jaxcnn.export, `--quantize int8|dynamic`)."""

from jaxcnn.compress.prune import (ConstantSparsity, PolynomialDecay, PruneState, compute_masks, find_prune_state,
                                   magnitude_mask, nm_mask, prune, pruning_from_spec, sparsity_report, strip)
from jaxcnn.compress.spec import parse_prune_spec

__all__ = ["ConstantSparsity", "PolynomialDecay", "PruneState", "compute_masks", "find_prune_state",
           "magnitude_mask", "nm_mask", "parse_prune_spec", "prune", "pruning_from_spec", "sparsity_report", "strip"]
