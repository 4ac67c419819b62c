"""Trains Lightweight OpenPose: ``python train.py --config configs/X.py --workdir DIR [--config.key=value ...]``.

Everything is in the config (see configs/default.py for the keys and how the original's flags map to
them); this file only parses flags. A recipe config (configs/coco_recipe.py, it has ``stage_order``)
runs its stages one after the other. Rerunning a command resumes from WORKDIR's latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints and TensorBoard logs.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    from lwop_jax import host_heap
    host_heap.keep_freed_memory()  # before JAX starts its threads; see lwop_jax/host_heap.py
    from lwop_jax import train_lib  # after flag parsing: --help stays fast
    logging.info('config:\n%s', FLAGS.config)
    if 'stage_order' in FLAGS.config:
        train_lib.run_recipe(FLAGS.config, FLAGS.workdir)
    else:
        train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
    app.run(main)
