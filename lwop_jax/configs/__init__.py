"""Training configurations (ml_collections), installed as lwop_jax.configs: `lwop train --config NAME`."""
