"""Model files: the safe torch reader, torch names to NNX paths, orbax files, published weights, export."""
