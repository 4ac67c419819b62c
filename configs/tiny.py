"""Tiny CPU run on the 4 COCO val2017 mini images (12 training samples): a smoke test that learns.

  python train.py --config configs/tiny.py --workdir /tmp/lwop_tiny

Like the reference overfit run of the original (/work/shared/reference/lwop_overfit_coco4_train_log.txt):
crops 184, batch 8, base lr 1e-3, from scratch. Measured: ~6-8 s per iteration on 2 shared CPU cores
(XLA:CPU's slow depthwise convolutions; the original took ~0.6 s), so 300 iterations take ~30-40 min.
The loss (per sample, both stages) fell from ~700 to 260 by iteration 15 in a smoke run; the reference
log is at ~210 after 150 iterations. AP needs far longer (the reference reached AP 0.76 on these 4 images after 2331 iterations,
~30 min of torch on 2 cores); validation on the same images every 100 iterations if coco_eval exists.
"""
from configs import default

COCO_MINI = '../shared/data/coco_val_mini'


def get_config():
    config = default.get_config()
    config.train_labels = f'{COCO_MINI}/person_keypoints_val2017_mini.json'
    config.train_images = f'{COCO_MINI}/val2017'
    config.val_labels = config.train_labels
    config.val_images = config.train_images
    config.crop_size = 184
    config.batch_size = 8
    config.base_lr = 1e-3
    config.num_train_steps = 300
    config.num_parallel_calls = 2
    config.checkpoint_after = 100
    config.keep_checkpoints = 3
    config.val_after = 100
    config.log_after = 25
    config.image_summary_after = 100
    return config
