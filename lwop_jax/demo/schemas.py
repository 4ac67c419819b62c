"""The keypoint schemas the demo trains, and the synthetic dataset skeleton each one's data is drawn in.

No JAX or TensorFlow: ``lwop demo`` checks ``--keypoint-schema`` with it before it starts anything.
"""

from __future__ import annotations

from lwop_jax.errors import InputFileError
from lwop_jax.schema import DEFAULT_SCHEMA, SCHEMA_FOLDER
from lwop_jax.synthetic.dataset_skeleton import DEFAULT_SKELETON, shipped_skeletons

# Schemas read from COCO's 17 keypoints: their data is the default synthetic set (category person).
COCO_SCHEMAS = (DEFAULT_SCHEMA, 'coco17')


def demo_schemas() -> tuple[str, ...]:
    """The names ``--keypoint-schema`` takes: the COCO ones, then each shipped synthetic skeleton (the
    keypoint schema of the same name trains on it: ``figure``)."""
    shipped = (name for name in shipped_skeletons() if name != DEFAULT_SKELETON)
    return (*COCO_SCHEMAS, *(name for name in shipped if (SCHEMA_FOLDER / f'{name}.json').is_file()))


def data_skeleton(keypoint_schema: str) -> str | None:
    """The dataset skeleton of the demo's synthetic data for a keypoint schema's name (None: COCO's 17
    keypoints). Raises InputFileError (one line naming the option) for any other name."""
    if keypoint_schema in COCO_SCHEMAS:
        return None
    if keypoint_schema in demo_schemas():
        return keypoint_schema
    raise InputFileError(
        f'--keypoint-schema {keypoint_schema}: the demo trains {", ".join(demo_schemas())} (a shipped schema '
        'with synthetic data of its keypoints); other schemas train with lwop train on their own data'
    )
