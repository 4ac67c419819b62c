"""Procedural COCO person-keypoint data sets: articulated, shaded people on cluttered backgrounds.

For a user with neither COCO nor a GPU: the demo, the tests and CI get data the project owns. NumPy
and OpenCV only (no jax, no tensorflow).

Each person is a small 3-D model (joint positions from limb lengths and joint angles, turned by a
yaw about the vertical axis, so a person seen from the back has its *anatomical* left on the image
left), projected orthographically, rotated in the image plane, and painted back to front as shaded
capsules (limbs), polygons (torso, pelvis) and an ellipse (head). Every person is painted a second
time into its own part-label mask, and the people of an image into one figure-label map in depth
order; the keypoint flags (v = 0 outside, 1 hidden, 2 visible) are read off those masks. Some images
hold a crowd: a dense cluster of small people annotated as one ``iscrowd`` 1 region (RLE).

Modules, by job; each imports only those above it (annotations only body and dataset_skeleton):

* ``body``: the body's tables, pose sampling, the 3-D skeleton (NumPy only);
* ``dataset_skeleton``: which body points a data set labels, under which names, in which order, in which
  category (COCO's 17 by default; ``skeletons/*.json`` ship others), and the parts owning each point;
* ``figure``: a posed person in pixels (:class:`~lwop_jax.synthetic.figure.Figure`) and its colours;
* ``drawing``: painting figures, their part maps, the background and camera effects (OpenCV);
* ``annotations``: keypoint flags, polygons, boxes, RLE, the COCO annotation dicts;
* ``scene``: placing people and crowds, :func:`render_image`;
* ``dataset``: :func:`generate_dataset`, writing images and ``annotations.json`` (process pool).

API: :func:`render_image` (one image and its annotations, deterministic from (seed, index)),
:func:`generate_dataset` (a COCO folder: ``images/*.jpg`` + ``annotations.json``), :func:`load_skeleton`
(a dataset skeleton by name or file). The skeleton changes the annotations only: the same seed gives the
same images and the same positions and flags of the body points that two skeletons share. The command
line (``lwop synthetic``) lives in :mod:`lwop_jax.cli.synthetic`::

    lwop synthetic --out DIR --num-images N [--seed S] [--width W] [--height H]
        [--max-people P] [--crowd-probability P] [--format jpg|png] [--workers K] [--skeleton NAME|FILE]
"""

from lwop_jax.synthetic.dataset import JPEG_QUALITY, check_options, generate_dataset, image_file_name
from lwop_jax.synthetic.dataset_skeleton import DatasetSkeleton, SkeletonError, load_skeleton
from lwop_jax.synthetic.scene import image_rng, render_image

__all__ = [
    'JPEG_QUALITY',
    'DatasetSkeleton',
    'SkeletonError',
    'check_options',
    'generate_dataset',
    'image_file_name',
    'image_rng',
    'load_skeleton',
    'render_image',
]
