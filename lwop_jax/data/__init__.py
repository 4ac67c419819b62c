"""Data pipeline: COCO label selection and conversion (:mod:`lwop_jax.data.coco`)."""
