"""Offline end-to-end demo: synthetic people -> CPU training -> AP on held-out images -> ONNX -> infer.

  lwop demo --out runs/demo [--time-budget SECONDS] [--quick] [--seed N] [--figure PATH]
            [--keypoint-schema coco18|coco17|figure]

Stages (settings in lwop_jax/configs/demo.py, the checkout's configs/demo.py; nothing is downloaded):

1. data:   ``OUT/data/train`` and ``OUT/data/val``, procedural COCO person-keypoint sets
           (lwop_jax.synthetic) drawn from different seeds, so the validation images are held out;
           with ``--keypoint-schema figure`` in the figure skeleton (:mod:`.schemas`), which every later
           stage then trains, scores, exports and draws;
2. train:  ``train_and_evaluate`` (the tf.data pipeline built as train.py builds it, the original's Adam
           groups, orbax checkpoints in ``OUT/train/checkpoints``), from scratch, for ``--time-budget``
           seconds (:mod:`.budget`);
3. eval:   COCO keypoint AP of the last checkpoint on the held-out set (the evaluate.py path):
           ``OUT/eval/detections.json`` and ``OUT/eval/stats.json`` (the 10 stats); the same with the flip
           test in ``OUT/eval/flip_stats.json`` (``demo.flip_test``); and the ceiling, the AP of perfect maps;
4. export: ``OUT/lwop_demo.onnx`` (BatchNorm folded, dynamic batch/height/width);
5. infer:  ``lwop infer`` with ONNX Runtime on held-out images: drawn images in ``OUT/infer/`` and the
           keypoints in ``OUT/infer/poses.json``; the best-looking drawn images, tiled, in
           ``OUT/demo_result.jpg`` (and ``--figure PATH``, e.g. docs/demo_result.jpg).

It prints where everything went, the AP and the time each stage took. A rerun with the same ``--out``
starts over (its data, checkpoints and results are replaced). ``--quick`` (CI) runs the same stages on
tiny sets for a few iterations (1-2 minutes); its AP means nothing.
"""
