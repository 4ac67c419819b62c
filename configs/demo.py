"""The offline end-to-end demo (``python -m lwop_jax.demo``): synthetic people, a few minutes of CPU training.

  python -m lwop_jax.demo --out runs/demo [--time-budget SECONDS] [--quick] [--seed N]

Data: ``demo.num_train_images`` procedural images (lwop_jax.synthetic) of ``demo.image_width`` x
``demo.image_height`` with 1..``demo.max_people`` people, and a held-out set from another seed. The training
labels are prepared with ``label_net_input_size`` (the original hard-codes 368), so the augmentation's
``target_dist`` 0.6 sizes the main person to 0.3..0.66 of ``label_net_input_size`` in the crop, as the
original does for its 368 crops. Evaluation (AP on the held-out set) and infer.py run the network at
``demo.eval_base_height``.

Training: the real ``train_lib.train_and_evaluate`` (tf.data pipeline, the 13 Adam groups, orbax
checkpoints), from scratch, constant learning rate (no MultiStepLR drop inside the demo), no periodic
validation. The step count follows the time budget: a short calibration call times an iteration, then
training resumes from its checkpoint up to the iteration the rest of the budget allows (the compiled step
comes from a persistent XLA cache in OUT/cache, so a resume costs ~10 s, not a recompilation).

Measured (2 shared CPU cores; AP on 100 held-out images). The demo as configured, load ~2: 1393 iterations
(0.27 s each) in 425 s of training, 439 s in all; held-out AP 0.016, AP50 0.072, AR 0.022 at eval height
128. Earlier runs, load 3.5-4 from another job (so ~0.57 s per iteration):

  settings                                        iterations (training s)  AP / AP50 / AR at eval height 96 | 128
  crop 96, batch 8, lr 1e-3 (as this config;      200                      0.000 / 0.000 / 0.000 | 0.000 / 0.001 / 0.001
    one run, checkpoints evaluated afterwards)    400, 600                 0.000 / 0.000 / 0.000 | 0.000 / 0.000 / 0.000
                                                  707 (424 s: the demo)    0.000 / 0.002 / 0.003 | 0.001 / 0.003 / 0.004
    resumed past the demo's budget:               1000 (~600 s)            0.000 / 0.004 / 0.001 | 0.002 / 0.012 / 0.009
                                                  1250                     0.001 / 0.004 / 0.005 | 0.005 / 0.023 / 0.016
                                                  1500                     0.002 / 0.016 / 0.011 | 0.005 / 0.025 / 0.019
                                                  1750 (~900 s)            0.001 / 0.012 / 0.009 | 0.009 / 0.051 / 0.024
  crop 128, label size 192, eval height 128       100 .. 402 (415 s)       0.000 / 0.000 / 0.000
  crop 128, lr 2e-3                               50 .. 300 (233 s)        0.000 / 0.000 / 0.000
  320x240 images, 1-3 people from 40 px, crowds,  240 (crop 128, lr 1e-3)  0.000 (eval heights 160-320)

The loss falls fast (~750 -> ~115 by iteration 200, ~95 by 800), and by 400-700 iterations the network
finds every person (boxes in the right places) but still puts most keypoints of a person on one spot
(the early "where is a person" phase), which scores ~0 AP. Learning the separate keypoints from scratch
takes far more iterations than fit in the 10-minute demo on 2 CPU cores (the original's overfit run on 4
COCO images needed ~2300 iterations for AP 0.76). The demo therefore shows the whole pipeline working,
not a usable model; a longer ``--time-budget`` trains further.
"""
import ml_collections

from configs import default


def get_config():
    config = default.get_config()
    # Data (the demo fills in train_labels / train_images; validation is done by the demo, not the loop).
    config.crop_size = 96
    config.label_net_input_size = 144   # scale_provided = bbox height / this (the original: 368)
    config.num_parallel_calls = 2
    config.seed = 0

    # Model and optimization: the reference overfit run's base lr, batch 8.
    config.num_refinement_stages = 1
    config.base_lr = 1e-3
    config.batch_size = 8
    config.lr_drop_epochs = (10 ** 6,)  # no drop within the demo
    config.num_epochs = -1
    config.num_train_steps = 5000       # upper bound; the time budget decides

    # Checkpoints and logging; no validation inside the loop.
    config.checkpoint_after = 10 ** 6   # only the final iteration of each training call
    config.keep_checkpoints = 2
    config.async_checkpointing = False
    config.log_after = 20
    config.tensorboard = False
    config.image_summary_after = 0
    config.val_after = 0
    config.val_labels = ''

    config.demo = ml_collections.ConfigDict()
    config.demo.image_width = 256
    config.demo.image_height = 192
    config.demo.max_people = 2
    config.demo.min_person_height = 80  # px; lwop_jax.synthetic's default is 40
    config.demo.crowd_probability = 0.0
    config.demo.num_train_images = 800
    config.demo.num_val_images = 100
    config.demo.time_budget = 420.0     # seconds of training (calibration + main run, compilation included)
    config.demo.calibration_steps = 8   # the first training call; its later steps time an iteration
    config.demo.min_train_steps = 8     # at least this many iterations whatever the budget
    config.demo.min_more_steps = 50     # resume only for at least this many more iterations
    config.demo.max_train_calls = 4     # train_and_evaluate calls (calibration + resumes)
    config.demo.budget_fill = 0.9       # each resumed call plans this fraction of the time left
    config.demo.eval_base_height = 128  # network input height for evaluation and infer.py
    config.demo.num_infer_images = 8    # held-out images drawn by infer.py

    # --quick (CI): the same stages, tiny sets, a few steps.
    config.quick = ml_collections.ConfigDict()
    config.quick.num_train_images = 16
    config.quick.num_val_images = 4
    config.quick.time_budget = 0.0      # calibration, then min_train_steps (exercises the resume)
    config.quick.calibration_steps = 2
    config.quick.min_train_steps = 4
    config.quick.min_more_steps = 1
    config.quick.num_infer_images = 2
    config.quick.crop_size = 64
    config.quick.label_net_input_size = 96
    config.quick.batch_size = 4
    return config
