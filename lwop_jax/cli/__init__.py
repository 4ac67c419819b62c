"""Command-line interfaces of lwop_jax: one module per command (see common.py)."""
