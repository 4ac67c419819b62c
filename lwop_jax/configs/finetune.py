"""Fine-tune the published model onto your own keypoints and data (COCO-format person keypoints).

  lwop train --config finetune --workdir runs/mine --config.keypoint_schema=my_schema.json \
      --config.train_labels=mine/annotations.json --config.train_images=mine/images \
      [--config.val_labels=mine/val.json --config.val_images=mine/val] [--config.init_from=PATH]

``init_from``: ``coco-370k`` (the original's published checkpoint, downloaded once into the cache; offline,
give the path of checkpoint_iter_370000.pth instead), any .pth of the original's format, or an lwop_jax orbax
folder. The schema transfer (README, "Fine-tune onto your own keypoints") puts its heads into your schema:
keypoints matched by the dataset keypoint they read, limbs by their two ends (reversed ones negated); it
prints what it mapped. A data set that names COCO's points its own way maps nothing (one warning line)
unless ``init_keypoint_matches`` pairs them, your schema's keypoint first, then the source's (coco18's names
for a .pth): ``--config.init_keypoint_matches="(('shoulder_r', 'r_sho'), ('neck', 'neck'))"``.

Settings: the published network (full-width MobileNet, 1 refinement stage, crops 368, the original's
augmentation), batch 8, base lr 1e-3 with the original's 13 Adam groups, 43 epochs with one x0.333 drop at
epoch 39 (90 %): the schedule measured best below. On a bigger GPU batch, scale base_lr with the batch.

Measured (2 shared CPU cores; README, "Fine-tune onto your own keypoints"), the demo's synthetic data in
the `figure` skeleton (16 points, 8 of them COCO's, the rest new: head centre, hand tips, toes, a pelvis),
the demo's network, from a coco18 demo model (held-out AP 0.395) with 11 of 17 keypoints and 8 of 16 limbs
matched by init_keypoint_matches, against from scratch, 6000 iterations each (43 epochs; equal iterations
stand for equal time: same network, same steps): held-out AP 0.465 against 0.380; AP 0.3 reached after
300 iterations against 5100. Learning rates tried (1200 iterations, drop at 90 %): 1e-4 0.316, 3e-4 0.346,
1e-3 0.382, 2e-3 0.373. On the 4 COCO mini images, coco17 from the original's overfit .pth with this base
lr and tiny.py's crops: AP 0.605 / 0.741 / 0.802 at 100 / 200 / 300 iterations (from scratch: 0 / 0 / 0).
"""
from lwop_jax.configs import default


def get_config():
    config = default.get_config()
    config.init_from = 'coco-370k'      # the published model (downloaded once), a .pth or an orbax folder
    config.keypoint_schema = 'coco17'   # the keypoints you train: a shipped name or your schema .json
    config.train_labels = ''            # required: your COCO-format person keypoints JSON ...
    config.train_images = ''            # ... and its images folder

    config.batch_size = 8
    config.base_lr = 1e-3               # measured best of 1e-4, 3e-4, 1e-3, 2e-3 (docstring)
    config.num_train_steps = -1         # the epochs decide
    config.num_epochs = 43
    config.lr_drop_epochs = (39,)       # one x0.333 drop at 90 %

    config.checkpoint_after = 1000
    config.keep_checkpoints = 3
    config.val_after = 1000             # when val_labels / val_images are given
    config.image_summary_after = 1000
    config.log_after = 50
    return config
