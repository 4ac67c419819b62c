"""The network a training run starts from: its size and compute dtype from the config, its weights random,
from MobileNet ImageNet weights, or from an lwop_jax / torch checkpoint (weights only)."""

from __future__ import annotations

import logging

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax.checkpoints.orbax_io import load_any
from lwop_jax.checkpoints.torch_names import init_backbone_from_mobilenet
from lwop_jax.errors import ModelFileError, TrainingError
from lwop_jax.model.layers import CONV_FORMULATIONS
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import assign, model_size, variables
from lwop_jax.training.data import schema_of

logger = logging.getLogger(__name__)


def create_model(config, *, load_init_weights: bool = True) -> PoseNet:
    """A PoseNet with the configured compute dtype, initialised as ``config.init_from`` says."""
    dtypes = {'float32': None, 'bfloat16': jnp.bfloat16}
    if config.compute_dtype not in dtypes:
        raise TrainingError(f'compute_dtype must be one of {sorted(dtypes)}, not {config.compute_dtype!r}')
    model = PoseNet(
        num_refinement_stages=config.num_refinement_stages,
        **network_size(config),
        dtype=dtypes[config.compute_dtype],
        rngs=nnx.Rngs(config.seed),
    )
    model.keypoint_schema = schema_of(config)  # travels in the graph definition to validation and checkpoints
    formulation = getattr(config, 'conv_formulation', 'auto')
    if formulation not in CONV_FORMULATIONS:
        raise TrainingError(f'conv_formulation must be one of {CONV_FORMULATIONS}, not {formulation!r}')
    model.set_conv_formulation(formulation)
    if not load_init_weights:
        return model
    if config.init_from and config.from_mobilenet:
        logger.info(init_backbone_from_mobilenet(model, config.init_from))
    elif config.init_from:
        init_weights_from(model, config.init_from)
    elif config.from_mobilenet:
        raise TrainingError('from_mobilenet=True needs init_from = the MobileNet ImageNet file')
    return model


def network_size(config) -> dict:
    """PoseNet's size arguments for a training config: backbone and channels from its keys, the heads from
    its keypoint schema (K + 1 heatmaps, 2 L PAFs)."""
    schema = schema_of(config)
    return model_size(config) | {'num_heatmaps': schema.num_heatmaps, 'num_pafs': schema.num_pafs}


def init_weights_from(model: PoseNet, path) -> None:
    """Weights (only) from a torch .pth or an orbax checkpoint, as the original ``--weights-only``.

    Refinement stages the source lacks keep their initialisation (stage 3 of the recipe adds two);
    extra source stages are ignored. Anything else missing or mis-shaped is an error (the original only
    warned).
    """
    source = load_any(path)
    target = variables(model)
    arrays = {key: np.asarray(var.get_value()) for key, var in variables(source).items() if key in target}
    missing = sorted(set(target) - set(arrays))
    not_stages = [key for key in missing if not key.startswith('refinement_stages.')]
    if not_stages:
        raise ModelFileError(f'{path}: lacks {not_stages[:8]} ({len(not_stages)} tensors)')
    assign(model, arrays, str(path), strict=False)
    new_stages = sorted({'.'.join(key.split('.')[:2]) for key in missing})
    logger.info(
        'initialised %d tensors from %s%s',
        len(arrays),
        path,
        f'; {", ".join(new_stages)} keep their initialisation' if new_stages else '',
    )
