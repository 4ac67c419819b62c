"""The whole original recipe: stage 1 (MobileNet init) -> stage 2 -> stage 3, in one command.

  python train.py --config configs/coco_recipe.py --workdir runs/recipe \
      --config.coco_dir=/data/coco --config.mobilenet_weights=/data/mobilenet_sgd_68.848.pth.tar

train.py sees ``stage_order`` and calls ``train_lib.run_recipe``: each stage trains in
WORKDIR/<stage> (stage1, stage2, stage3) and starts from the final checkpoint of the one before.
Rerunning the command resumes the unfinished stage; finished stages return at once. Per-stage
overrides: --config.stages.stage2.num_train_steps=100000; shared ones (coco_dir, batch_size,
compute_dtype, ...) are set once here and reach every stage.
Expected: ~5-7 days on one GPU at ~200 images/s (an estimate, not measured); AP ~38% / ~39% / ~40% after
the stages (COCO val2017, the last with 1 refinement stage).
"""
import ml_collections

from lwop_jax.configs import coco_stage1, coco_stage2, coco_stage3

# Keys set once for the recipe and shared by all stages (FieldReferences: overriding one here reaches all).
SHARED_KEYS = ('coco_dir', 'batch_size', 'batches_per_iter', 'compute_dtype', 'checkpoint_after', 'val_after',
               'log_after', 'keep_checkpoints', 'num_parallel_calls', 'distributed',
               'coordinator_address', 'num_processes', 'process_id', 'coordinator_timeout_s', 'data_source',
               'tfds_data_dir', 'seed')


def get_config():
    config = ml_collections.ConfigDict()
    stage1 = coco_stage1.get_config()
    for key in SHARED_KEYS:
        config[key] = stage1[key]
    config.mobilenet_weights = 'mobilenet_sgd_68.848.pth.tar'
    config.stage_order = ('stage1', 'stage2', 'stage3')
    config.stages = ml_collections.ConfigDict()
    for name, module in zip(config.stage_order, (coco_stage1, coco_stage2, coco_stage3)):
        stage = module.get_config()
        for key in SHARED_KEYS:
            stage[key] = config.get_ref(key)
        config.stages[name] = stage
    config.stages.stage1.init_from = config.get_ref('mobilenet_weights')
    # stage2/stage3 init_from stay '': run_recipe fills in the previous stage's checkpoints.
    return config
