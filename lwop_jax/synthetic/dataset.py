"""Writing a data set: images rendered (in this process or a pool of processes) and written atomically
as ``images/*.jpg``, then ``annotations.json``. The same arguments give the same bytes, whatever the
number of processes.
"""

import contextlib
import functools
import json
import multiprocessing
import pathlib
from concurrent.futures import ProcessPoolExecutor

import cv2
from tqdm import tqdm

from lwop_jax import atomic
from lwop_jax.synthetic.dataset_skeleton import load_skeleton
from lwop_jax.synthetic.drawing import CLUTTER_SHAPES
from lwop_jax.synthetic.scene import (
    CROWD_PROBABILITY,
    FIRST_PERSON_LABEL,
    MAX_PERSON_HEIGHT_TO_IMAGE,
    MIN_PERSON_HEIGHT,
    render_image,
)

JPEG_QUALITY = 92


def image_file_name(index, image_format='jpg'):
    return f'{index + 1:012d}.{image_format}'


def _render_and_write(index, images_dir, seed, image_format, **scene):
    image, annotations = render_image(index, seed, **scene)
    file_name = image_file_name(index, image_format)
    parameters = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == 'jpg' else []
    ok, encoded = cv2.imencode(f'.{image_format}', image, parameters)
    if not ok:
        raise RuntimeError(f'could not encode {file_name}')
    atomic.write_bytes(pathlib.Path(images_dir) / file_name, encoded.tobytes())
    entry = {'id': index + 1, 'file_name': file_name, 'width': image.shape[1], 'height': image.shape[0]}
    return entry, annotations


def check_options(
    image_format='jpg',
    max_people=4,
    clutter_shapes=CLUTTER_SHAPES,
    min_person_height=MIN_PERSON_HEIGHT,
    max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
    height=480,
):
    """Raises ValueError (one line) for options :func:`generate_dataset` cannot honour."""
    if image_format not in ('jpg', 'png'):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= max_people <= 255 - FIRST_PERSON_LABEL:
        raise ValueError(f'max_people must be in [1, {255 - FIRST_PERSON_LABEL}], got {max_people}')
    if not 0 <= clutter_shapes[0] <= clutter_shapes[1]:
        raise ValueError(f'clutter_shapes must be (fewest, most) with 0 <= fewest <= most, got {clutter_shapes}')
    if not 0 < min_person_height <= max_person_height * height:
        raise ValueError(
            f'need 0 < min_person_height ({min_person_height} px) <= max_person_height x height '
            f'({max_person_height} x {height} px)'
        )


def generate_dataset(
    out_dir,
    num_images,
    seed=0,
    width=640,
    height=480,
    max_people=4,
    crowd_probability=CROWD_PROBABILITY,
    image_format='jpg',
    workers=1,
    progress=False,
    min_person_height=MIN_PERSON_HEIGHT,
    max_person_height=MAX_PERSON_HEIGHT_TO_IMAGE,
    people_inside=False,
    clutter_shapes=CLUTTER_SHAPES,
    skeleton=None,
):
    """Write a COCO person-keypoints data set: ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``.

    Deterministic: the same arguments give the same bytes, whatever ``workers``.

    Args:
        image_format: 'jpg' (quality JPEG_QUALITY) or 'png'.
        workers: processes rendering images in parallel (1: this process).
        progress: show a tqdm bar.
        min_person_height: smallest standing height in pixels (heights are log-uniform from it up).
        max_person_height: largest standing height, as a fraction of the image height.
        people_inside: keep every person wholly inside the image (default: some are cut by its border).
        clutter_shapes: (fewest, most) random background shapes per image.
        skeleton: the category and its keypoints (names, order, body points): a shipped dataset skeleton's
            name ('coco17', the default, COCO's person keypoints; 'figure'), a JSON file or a DatasetSkeleton
            (lwop_jax.synthetic.dataset_skeleton). The images do not depend on it.
    Raises:
        SkeletonError (an InputFileError): a skeleton file that cannot be used (one line: file and field).
    Returns:
        pathlib.Path of the annotation JSON.
    """
    check_options(image_format, max_people, clutter_shapes, min_person_height, max_person_height, height)
    skeleton = load_skeleton(skeleton)
    out_dir = pathlib.Path(out_dir)
    images_dir = out_dir / 'images'
    images_dir.mkdir(parents=True, exist_ok=True)
    render = functools.partial(
        _render_and_write,
        images_dir=str(images_dir),
        seed=seed,
        width=width,
        height=height,
        max_people=max_people,
        crowd_probability=crowd_probability,
        image_format=image_format,
        min_person_height=min_person_height,
        max_person_height=max_person_height,
        people_inside=people_inside,
        clutter_shapes=tuple(clutter_shapes),
        skeleton=skeleton,
    )
    with _rendered_images(render, num_images, workers) as results:
        if progress:
            results = _with_progress(results, num_images)
        coco = _coco_dataset(seed, results, skeleton.category)
    path = out_dir / 'annotations.json'
    atomic.write_bytes(path, json.dumps(coco, separators=(',', ':')).encode())
    return path


@contextlib.contextmanager
def _rendered_images(render, num_images, workers):
    """Yields the (image entry, annotations) of images 0 .. num_images - 1 in order, as ``render``
    makes them: in this process, or in ``workers`` processes (shut down on leaving)."""
    if workers <= 1:
        yield (render(index) for index in range(num_images))
        return
    # 'spawn', not fork: the caller may have jax (multithreaded) loaded, and forking it can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        yield pool.map(render, range(num_images), chunksize=4)


def _with_progress(results, num_images):
    return tqdm(results, total=num_images, desc='synthetic images', unit='img')


def _coco_dataset(seed, results, category):
    """The COCO dict of the data set: image entries in order, annotations numbered from 1."""
    coco = {
        'info': {'description': f'lwop_jax synthetic people, seed {seed}', 'version': '1.0'},
        'licenses': [],
        'images': [],
        'annotations': [],
        'categories': [category],
    }
    for entry, annotations in results:
        coco['images'].append(entry)
        for annotation in annotations:
            coco['annotations'].append({'id': len(coco['annotations']) + 1, **annotation})
    return coco
