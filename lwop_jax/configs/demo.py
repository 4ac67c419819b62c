"""The offline end-to-end demo (``lwop demo``): synthetic people, a few minutes of CPU training.

  lwop demo --out runs/demo [--time-budget SECONDS] [--quick] [--seed N] [--figure PATH]
            [--keypoint-schema coco18|coco17|figure]

Data: ``demo.num_train_images`` + ``demo.num_val_images`` (held out, another seed) procedural images
(lwop_jax.synthetic) of 256x192 with 1-2 people, 112 px to 0.95 x the image height tall, wholly inside
the image, on backgrounds with 0-4 clutter shapes, no crowds. Ceiling: perfect stride-8 maps (the ground
truth rendered as targets at the evaluation scale, decoded by the evaluation path) score AP 0.82 on such a
held-out set at eval height 192 (0.80 with people from 80 px; 0.76 from 134 px: more overlap).

Network: the original's layers with a half-width backbone (``backbone_width`` 0.5: MobileNet's width
multiplier, 256 channels at stride 8 instead of 512) cut after conv4_2 (``backbone_depth`` 7: the five
conv5 blocks, dilated one first, dropped) and no refinement stage. Per training step at crops 96 (a bare
loop, 200 steps): 0.068 s, against 0.077 s with two conv5 blocks (depth 9), 0.095-0.100 s with all five
and 0.17 s for the full-width network. Whole runs at equal time (iterations in proportion to the step
times; one lr drop at 90 %): depth 12 4300 its AP 0.280, depth 9 5000 its 0.327, depth 7 5700 its
0.386: at crops 96 (12x12 maps) the conv5 blocks cost time and teach little in minutes of training.

Training: the real ``train_lib.train_and_evaluate`` (tf.data pipeline, the 13 Adam groups, orbax
checkpoints), from scratch, crops 96, batch 8, base lr 1e-3, rotation +-20 degrees. Labels are prepared
with ``label_net_input_size`` 288 (the original hard-codes 368), so target_dist 0.6 sizes people to
86..190 px in the crops, about their size at ``demo.eval_base_height`` 192 (the best eval height:
0.213 / 0.241 / 0.226 / 0.231 / 0.201 at 176 / 192 / 208 / 224 / 256 for one run). The step count follows
the time budget: a short calibration call times an iteration (mean pace of its last two thirds), then
training resumes from its checkpoint up to the iteration the rest of the budget allows, and a top-up
call uses what is left; the learning rate drops x0.333 once, at 90 % of the iterations planned after the
calibration (the original's reference overfit run dropped it at 80 %; later is better here, see below).
Each new training step (the learning-rate drop is one of its constants) is compiled in a child process
into a persistent XLA cache in OUT/cache: a process that compiled the step itself runs it 20-30 % slower
(see demo.compile_in_child).

Measured (2 shared CPU cores), this config: README's first command from a fresh clone (venv, pip
install with a warm pip cache, demo) 9m00s (``time``), the demo 468 s of it; training 444 s for 5598
iterations (0.065-0.069 s each; two child compilations, 14 s and 16 s); held-out AP 0.380 (AP50 0.769,
AR 0.422), with the flip test 0.398; ceiling 0.822. Curve (held-out AP / AP50, eval height 192; lr
dropped near 4800): 3900 its 0.281 / 0.661, 4500 0.307 / 0.633, 5100 0.371 / 0.720, 5324 0.354 / 0.710,
5598 0.380 / 0.769. With a 460 s budget: from a fresh clone 9m32s, 6272 iterations, AP 0.399 (flip test
0.427; 4800 its 0.324, 6000 0.403); and a run of the demo alone 8m22s, AP 0.423 after 6564 iterations,
but its calibration read 0.058 s per step for a real 0.067 s and it trained 475 s: hence 445 s.
With all 12 backbone blocks (the config before ``backbone_depth``; each figure one run): the demo 8m19s,
4321 iterations at 0.09-0.10 s, AP 0.289 (curve: 3000 its 0.185, 3600 0.232, 3900 0.266, 4200 0.283);
with the lr drop at 80 % instead of 90 %: 0.273 (4403 its), 0.270 (4529 its; it levelled off after the
drop), at 60 % 0.194. Before the child compilation (steps 0.11-0.12 s): 3927 iterations, 0.242.
The comparisons below were made with all 12 blocks.
Tried (each a full demo run, 450 s budget): crops 80 (4617 its) 0.207; batch 4 (5000 its) 0.189; lr drop
at 60 % 0.194; base lr 2e-3 0.217; people from 134 px (label size 320) 0.187; the full-width backbone
with people from 80 px (label size 256, 1810 its) 0.123, and the half width there 0.148 (3381 its).
At a fixed 2000 iterations (lr drop at 1600; this config 0.130, run-to-run noise ~0.01): weight decay 0
0.136; sigma 5 0.139; heatmap loss x3 0.136; no rotation 0.124; backbone width 0.25 with 64 channels
0.085 (at 0.065 s per step: not enough faster); people 1.5x larger in the crops (label size 192) 0.038
at eval height 240. Averaging the weights of the last 2-4 checkpoints (3600..4360) of a run: 0.271-0.280
against 0.279 for the last one alone, so weight averaging (EMA) would not help. The same network scores
0.278 on 100 of its training images and 0.279 held out: it is under-trained, not over-fitted.
The decay's shape does not matter: from one 3000-iteration run at the base lr (AP 0.185, as the demo at
3000), on to 4300 iterations: one x0.333 drop at 3870 0.280, two (3700, 4050) 0.286, a linear decay to 0
from 3500 0.288, from 3000 0.280. Whole 4300-iteration runs, drop at 3870 (0.280): Adam beta2 0.99
0.267; crop centre jitter +-20 px 0.226, +-60 px 0.265 (the original's +-40 is best); He init (x sqrt 6)
of the convs without BatchNorm (CPM, stage) trained slower (loss 53 vs 47 at 2300, stopped). At eval,
heatmap peak threshold 0.05 / 0.15 instead of the original's 0.1: 0.275 / 0.291 (0.288).
Speed: ~0.09 s per step is compute: batch 16 takes 0.186 s, batch 4 0.051; 96 / 64 CPM and stage
channels 0.090 / 0.076 s (128: 0.089-0.095).
What limits it (one run, swapping in ground-truth maps at eval): ground-truth heatmaps with the
network's PAFs score 0.575 against 0.241, ground-truth PAFs with its heatmaps 0.163: keypoint
localisation, not grouping, is what the short training lacks.
"""
import ml_collections

from lwop_jax.configs import default


def get_config():
    config = default.get_config()
    # Data (the demo fills in train_labels / train_images; validation is done by the demo, not the loop).
    config.crop_size = 96
    config.label_net_input_size = 288   # scale_provided = bbox height / this (the original: 368)
    config.num_parallel_calls = 2
    config.max_rotate_degree = 20.0     # the synthetic people are already posed and leaning
    config.seed = 0

    # Model and optimization: the reference overfit run's base lr, batch 8.
    config.num_refinement_stages = 0
    config.backbone_width = 0.5         # half-width MobileNet: ~1.9x faster steps than 1.0 (see above)
    config.backbone_depth = 7           # up to conv4_2, no conv5 block: faster and better here (see above)
    config.base_lr = 1e-3
    config.batch_size = 8
    config.lr_drop_factor = 0.333       # once, at demo.lr_drop_at of the planned iterations (via lr_drop_epochs)
    config.num_epochs = -1
    config.num_train_steps = 10000      # upper bound; the time budget decides

    # Checkpoints and logging; no validation inside the loop.
    config.checkpoint_after = 300      # and the final iteration of each training call (the curve)
    config.keep_checkpoints = 10
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
    config.demo.min_person_height = 112  # px; lwop_jax.synthetic's default is 40
    config.demo.max_person_height = 0.95  # of the image height; lwop_jax.synthetic's default is 1.3
    config.demo.people_inside = True    # no one cut by the image border
    config.demo.clutter_shapes = (0, 4)  # random background shapes; lwop_jax.synthetic's default is (3, 15)
    config.demo.data_workers = 2        # rendering processes
    config.demo.crowd_probability = 0.0
    config.demo.num_train_images = 800
    config.demo.num_val_images = 100
    config.demo.time_budget = 445.0     # seconds of training (calibration + main run, compilation included)
    config.demo.calibration_steps = 60  # the first training call; its later steps time an iteration
    config.demo.min_train_steps = 8     # at least this many iterations whatever the budget
    config.demo.min_more_steps = 50     # resume only for at least this many more iterations
    config.demo.max_train_calls = 4     # train_and_evaluate calls (calibration + resumes)
    config.demo.budget_fill = 0.9       # each resumed call plans this fraction of the time left
    config.demo.lr_drop_at = 0.9        # of the planned iterations (12 blocks: 0.8 AP 0.273, 0.9 0.289)
    config.demo.eval_base_height = 192  # network input height for evaluation and infer.py
    config.demo.flip_test = True        # also the AP with evaluate.py --flip (a few seconds more)
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
