"""The names of the ways an embedding model can run, in one place that imports nothing.

`qa.embedding` implements them; the command line offers them without importing numpy,
so ``qa --help`` stays instant.

- ``onnx``: ONNX Runtime, fp32, on a graph fused by its transformer optimiser.
- ``onnx-int8``: the same export, dynamically quantised (about 3.4x the plain script's
  indexing speed, but SQuAD hybrid recall@1 0.005 lower).
- ``openvino-bf16``: OpenVINO on the plain export, in bfloat16 where the CPU computes it
  natively (AVX512-BF16 or AMX), else fp32. bf16 keeps fp32's exponent, so its vectors agree
  with fp32 ones at cosine >= 0.9999.
- ``torch``: sentence-transformers itself.

README "Embedding backends" has the measurements behind the default.
"""

BACKENDS = ("openvino-bf16", "onnx", "onnx-int8", "torch")
DEFAULT_BACKEND = "openvino-bf16"
#: The numbers each backend computes with. Backends of one precision give the same vectors (to
#: float rounding) and may query each other's indexes; others are refused, never mixed silently.
PRECISION = {"openvino-bf16": "bf16", "onnx": "fp32", "onnx-int8": "int8", "torch": "fp32"}
