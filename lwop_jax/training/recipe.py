"""A recipe config's stages (configs/coco_recipe.py) run one after another, each from the one before."""

from __future__ import annotations

import logging
import pathlib

from lwop_jax.errors import TrainingError
from lwop_jax.training.loop import train_and_evaluate

logger = logging.getLogger(__name__)


def run_recipe(config, workdir) -> None:
    """Runs the stages of a recipe config (configs/coco_recipe.py) one after another.

    Stage i trains in ``workdir/<stage name>``; a stage whose ``init_from`` is empty starts from the
    final checkpoint of the stage before it. Each stage resumes on its own, so rerunning the same
    command continues where it stopped.
    """
    previous = None
    for name in config.stage_order:
        stage = config.stages[name]
        stage_dir = pathlib.Path(workdir) / name
        if not stage.init_from:
            if previous is None:
                raise TrainingError(f'recipe stage {name} has no init_from and no previous stage')
            with stage.unlocked():
                stage.init_from = str((previous / 'checkpoints').absolute())
        logger.info('recipe stage %s -> %s (init_from %s)', name, stage_dir, stage.init_from)
        train_and_evaluate(stage, stage_dir)
        previous = stage_dir
