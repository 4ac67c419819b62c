"""The original's training loss: squared, masked differences over every stage's heatmaps and PAFs."""

from __future__ import annotations

import jax.numpy as jnp


def l2_loss(prediction, target, mask, batch_size):
    """The original ``l2_loss``: sum of ((prediction - target) * mask)^2 / 2 / batch_size.

    ``mask`` (B, h, w) multiplies the *difference*, so fractional mask values (crowd borders after
    the INTER_AREA downsampling) enter squared, as in the original.
    """
    difference = (prediction - target) * mask[..., None]
    return jnp.sum(jnp.square(difference)) / 2 / batch_size


def loss_fn(stage_outputs, heatmaps, pafs, mask):
    """Total loss over all stages and the per-stage losses (for logging, as the original prints them).

    Args:
        stage_outputs: ``model(images)``: a list of (heatmaps, pafs) per stage.
        heatmaps, pafs, mask: targets (B, h, w, 19), (B, h, w, 38), (B, h, w).
    Returns:
        (total, {'stage1_heatmaps': ..., 'stage1_pafs': ..., 'stage2_heatmaps': ..., ...}).
    """
    batch_size = heatmaps.shape[0]
    per_stage = {}
    for index, (predicted_heatmaps, predicted_pafs) in enumerate(stage_outputs, start=1):
        per_stage[f'stage{index}_heatmaps'] = l2_loss(predicted_heatmaps, heatmaps, mask, batch_size)
        per_stage[f'stage{index}_pafs'] = l2_loss(predicted_pafs, pafs, mask, batch_size)
    return sum(per_stage.values()), per_stage
