"""What pruning and quantization-aware training did to a run, for its metrics.json."""

from __future__ import annotations

from jaxcnn.compress.prune import sparsity_report
from jaxcnn.compress.quantize import float_size_bytes, int8_size_bytes


def compression_metrics(config, params, test_accuracy=None) -> dict:
    """`{}` for a plain run; else the pruning spec, parameter and non-zero counts, the achieved
    kernel sparsity, and for `quantize` the int8 weights' size and the (fake-quantized) test
    accuracy, beside the float32 size."""
    if not (config.prune or config.quantize):
        return {}
    counts = sparsity_report(params)
    out = {"prune": config.prune, "quantize": config.quantize, "params_total": counts["params"],
           "params_nonzero": counts["nonzero"], "kernel_sparsity": counts["kernel_sparsity"],
           "float32_weights_bytes": float_size_bytes(params)}
    if config.quantize:
        out.update(int8_weights_bytes=int8_size_bytes(params), quantized_test_accuracy=test_accuracy)
    return out
