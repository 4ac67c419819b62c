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

Modules, by job; each imports only those above it (annotations only body):

* ``body``: the body's tables, pose sampling, the 3-D skeleton (NumPy only);
* ``figure``: a posed person in pixels (:class:`~lwop_jax.synthetic.figure.Figure`) and its colours;
* ``drawing``: painting figures, their part maps, the background and camera effects (OpenCV);
* ``annotations``: keypoint flags, polygons, boxes, RLE, the COCO annotation dicts;
* ``scene``: placing people and crowds, :func:`render_image`;
* ``dataset``: :func:`generate_dataset`, writing images and ``annotations.json`` (process pool).

API: :func:`render_image` (one image and its annotations, deterministic from (seed, index)),
:func:`generate_dataset` (a COCO folder: ``images/*.jpg`` + ``annotations.json``). The command line
(``lwop synthetic``) lives in :mod:`lwop_jax.cli.synthetic`::

    lwop synthetic --out DIR --num-images N [--seed S] [--width W] [--height H]
        [--max-people P] [--crowd-probability P] [--format jpg|png] [--workers K]
"""

from lwop_jax.synthetic.dataset import JPEG_QUALITY, check_options, generate_dataset, image_file_name
from lwop_jax.synthetic.scene import image_rng, render_image

__all__ = ['JPEG_QUALITY', 'check_options', 'generate_dataset', 'image_file_name', 'image_rng', 'render_image']
