"""COCO stage 1: from MobileNet-v1 ImageNet weights, 1 refinement stage, 420k iterations, batch 80.

  python train.py --config configs/coco_stage1.py --workdir runs/stage1 \
      --config.coco_dir=/data/coco --config.init_from=/data/mobilenet_sgd_68.848.pth.tar

Expects coco_dir/annotations/person_keypoints_{train,val}2017.json, coco_dir/{train,val}2017/;
validation uses val_labels (default: the full val2017 json; point it at a val_subset.json for speed).
Expected: AP ~38% on COCO val2017 (the original's README). Duration not measured here (no GPU in
this session): 420k iterations x 80 images = 34M images, ~2 days at 200 images/s; not practical on CPU.
Stop/restart at will: rerunning the command resumes exactly from the latest checkpoint.
"""
from lwop_jax.configs import default


def get_config():
    config = default.get_config()
    config.coco_dir = '/data/coco'
    coco = config.get_ref('coco_dir')
    config.train_labels = coco + '/annotations/person_keypoints_train2017.json'
    config.train_images = coco + '/train2017'
    config.val_labels = coco + '/annotations/person_keypoints_val2017.json'
    config.val_images = coco + '/val2017'
    config.init_from = 'mobilenet_sgd_68.848.pth.tar'
    config.from_mobilenet = True
    config.num_refinement_stages = 1
    config.num_train_steps = 420_000
    return config
