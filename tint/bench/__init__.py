"""Benchmarks: the GPU variants table (``gpu``) and CPU eager vs ONNX Runtime (``cpu``)."""
