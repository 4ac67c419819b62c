"""The network a training run starts from: its size and compute dtype from the config, its weights random,
from MobileNet ImageNet weights, or from an lwop_jax / torch checkpoint (weights only)."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from lwop_jax.checkpoints.torch_names import init_backbone_from_mobilenet
from lwop_jax.checkpoints.transfer import announce, load_source, transfer_weights
from lwop_jax.errors import TrainingError
from lwop_jax.model.layers import CONV_FORMULATIONS
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import model_size
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
        init_weights_from(model, config.init_from, config.init_keypoint_matches)
    elif config.from_mobilenet:
        raise TrainingError('from_mobilenet=True needs init_from = the MobileNet ImageNet file')
    return model


def network_size(config) -> dict:
    """PoseNet's size arguments for a training config: backbone and channels from its keys, the heads from
    its keypoint schema (K + 1 heatmaps, 2 L PAFs)."""
    schema = schema_of(config)
    return model_size(config) | {'num_heatmaps': schema.num_heatmaps, 'num_pafs': schema.num_pafs}


def init_weights_from(model: PoseNet, path, keypoint_matches=()) -> None:
    """Weights (only) from a torch .pth, an orbax checkpoint or a published model by name, as the original
    ``--weights-only``; a source of another keypoint schema goes through the schema transfer
    (:mod:`lwop_jax.checkpoints.transfer`, with ``keypoint_matches``), which prints what it mapped.

    Refinement stages the source lacks keep their initialisation (stage 3 of the recipe adds two);
    extra source stages are ignored. Anything else missing, or another backbone size, is an error (the
    original only warned).
    """
    report = transfer_weights(model, load_source(path), str(path), keypoint_matches)
    if report.mapping.source != report.mapping.target:
        if jax.process_index() == 0:  # one line per run, not per host
            announce(report)
        return
    logger.info(
        'initialised %d tensors from %s%s',
        report.initialised,
        path,
        f'; {", ".join(report.new_stages)} keep their initialisation' if report.new_stages else '',
    )
