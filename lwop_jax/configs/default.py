"""Defaults: the original train.py's settings (its argparse defaults and hard-coded values).

Not meant to be run as is (no data paths); the coco_* and tiny configs start from it. Any key can be
overridden on the command line, e.g. ``python train.py --config configs/coco_stage1.py
--workdir runs/stage1 --config.batch_size=40 --config.batches_per_iter=2``.

Original flag -> config key:
  --prepared-train-labels   -> train_labels (the COCO person_keypoints_*.json itself: labels are
                               prepared in-process, as scripts/prepare_train_labels.py did)
  --train-images-folder     -> train_images
  --num-refinement-stages   -> num_refinement_stages
  --base-lr                 -> base_lr
  --batch-size              -> batch_size (global, over all devices and hosts)
  --batches-per-iter        -> batches_per_iter
  --num-workers             -> num_parallel_calls (tf.data; <= 0: AUTOTUNE)
  --checkpoint-path         -> init_from (weights only: .pth or orbax); resuming a stopped run needs
                               no flag: it continues from the latest checkpoint in --workdir
  --from-mobilenet          -> from_mobilenet
  --weights-only            -> (always: init_from loads weights only)
  --experiment-name         -> --workdir (checkpoints in WORKDIR/checkpoints/<iteration>)
  --log-after, --checkpoint-after, --val-after -> log_after, checkpoint_after, val_after
  --val-labels, --val-images-folder, --val-output-name -> val_labels, val_images, val_output_name
Hard-coded in the original: stride 8, sigma 7, paf thickness 1, crop 368 (CropPad), weight decay 5e-4,
MultiStepLR milestones [100, 200, 260] x0.333, 280 epochs.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    # Data.
    config.train_labels = ''            # COCO person_keypoints_train2017.json
    config.train_images = ''            # COCO train2017/
    config.data_source = 'json'         # 'json': the JSON and image files; 'tfds': records prepared once from them
    config.tfds_data_dir = ''           # tfds records go here ('': $TFDS_DATA_DIR or ~/tensorflow_datasets)
    config.crop_size = 368
    config.label_net_input_size = 368   # a label's scale_provided = its bbox height / this (the original: 368)
    config.stride = 8
    config.sigma = 7.0
    config.paf_thickness = 1.0
    config.augment = True
    config.max_rotate_degree = 40.0     # Rotate: uniform in +-this many degrees
    config.shuffle = True
    config.num_parallel_calls = -1      # <= 0: tf.data AUTOTUNE
    config.seed = 0                     # model init and data order/augmentation
    config.keypoint_schema = 'coco18'   # the keypoints trained: coco18 (the original's), coco17, or a schema .json

    # Model.
    config.num_refinement_stages = 1
    config.backbone_width = 1.0         # MobileNet width multiplier; the original (and its checkpoints): 1.0
    config.backbone_depth = 12          # MobileNet blocks kept (7..12); the original: 12
    config.num_channels = 128           # CPM and stage channels; the original: 128
    config.conv_formulation = 'auto'  # depthwise/1x1 convs: 'plain' (lax.conv), 'shifted' (fast on CPU), 'auto'
    config.compute_dtype = 'float32'    # or 'bfloat16' (parameters, BatchNorm and loss stay float32)
    config.init_from = ''               # .pth / orbax checkpoint (weights only) or MobileNet ImageNet file
    config.from_mobilenet = False       # init_from is mobilenet_sgd_68.848.pth.tar: backbone only
    config.init_keypoint_matches = ()   # (keypoint, init_from's keypoint) name pairs for the schema transfer

    # Optimization.
    config.base_lr = 4e-5
    config.batch_size = 80
    config.batches_per_iter = 1
    config.weight_decay = 5e-4
    config.lr_drop_epochs = (100, 200, 260)
    config.lr_drop_factor = 0.333
    config.num_epochs = 280             # the original's epoch loop ends after 280 epochs
    config.num_train_steps = -1         # iterations; > 0 stops there (or at num_epochs, if earlier)

    # Checkpoints, logging, validation.
    config.checkpoint_after = 5000
    config.keep_checkpoints = 0         # 0 keeps all, as the original; N keeps the newest N
    config.async_checkpointing = True
    config.log_after = 100
    config.tensorboard = True
    config.image_summary_after = 5000   # predicted vs target heatmaps; 0: never
    config.val_after = 5000
    config.val_labels = ''              # e.g. val_subset.json or person_keypoints_val2017.json; '': no validation
    config.val_images = ''
    config.val_output_name = 'detections.json'
    config.eval_num_refinement_stages = 0  # 0: all; 1 for the 3-stage run, as the original evaluates it

    # Multi-host (jax.distributed): every process runs the same command. distributed=True alone lets JAX
    # detect the cluster (SLURM, Open MPI, TPU pods, ...); on a plain cluster set the three keys below
    # (they imply distributed). The workdir must be one folder that all processes see.
    config.distributed = False
    config.coordinator_address = ''     # host:port of process 0, e.g. '10.0.0.1:1234'
    config.num_processes = 0            # 0: detected
    config.process_id = -1              # this process's rank; -1: detected
    # Seconds to wait for the coordinator and all processes to join before giving up with one line (JAX's
    # own default is 300 s, then an abort from C++). 120 s leaves time to start hosts by hand.
    config.coordinator_timeout_s = 120.0
    return config
