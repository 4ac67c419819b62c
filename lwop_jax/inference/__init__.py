"""CPU inference: pre-processing, backends (ONNX Runtime, OpenVINO, JAX), decoding, results, tracking, media."""
