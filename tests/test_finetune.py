"""Fine-tuning through `lwop train`: a published-format .pth (the original's overfit model, coco18) as
`init_from` for another keypoint schema goes through the schema transfer instead of being refused."""

import pytest
from cli_runs import lwop

from lwop_jax.checkpoints import orbax_io
from lwop_jax.configs import finetune

pytest.importorskip('tensorflow')

OVERFIT = 'lwop_overfit_coco4.pth'


@pytest.fixture(scope='module')
def synthetic_sets(tmp_path_factory):
    """4 synthetic images in COCO's 17 keypoints and the same in the `figure` skeleton."""
    root = tmp_path_factory.mktemp('finetune_data')
    sets = {}
    for skeleton in ('coco17', 'figure'):
        out = root / skeleton
        lwop('synthetic', '--out', out, '--num-images', 4, '--seed', 5, '--skeleton', skeleton,
             '--people-inside', '--width', 128, '--height', 96, cwd=root)  # fmt: skip
        sets[skeleton] = out
    return sets


def train_small(workdir, data, schema, init_from, *extra):
    """`lwop train --config finetune` for 2 iterations of batch 2 at crops 64 (the network keeps the
    source's size: the original's)."""
    return lwop('train', '--config', 'finetune', '--workdir', workdir, f'--config.init_from={init_from}',
                f'--config.train_labels={data / "annotations.json"}', f'--config.train_images={data / "images"}',
                f'--config.keypoint_schema={schema}', '--config.crop_size=64', '--config.batch_size=2',
                '--config.num_train_steps=2', '--config.checkpoint_after=2', '--config.val_after=0',
                '--config.image_summary_after=0', '--config.tensorboard=false', '--config.num_parallel_calls=1',
                *extra, cwd=workdir.parent, check=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize('schema', ['coco17', 'figure'])
def test_train_from_a_coco18_pth_into_another_schema(reference_dir, synthetic_sets, tmp_path, schema):
    result = train_small(tmp_path / 'run', synthetic_sets[schema], schema, reference_dir / OVERFIT)
    assert result.returncode == 0, result.stderr[-3000:]
    model = orbax_io.load_any(tmp_path / 'run' / 'checkpoints')
    assert model.keypoint_schema.name == schema
    if schema == 'coco17':
        assert 'schema transfer coco18 -> coco17 from ' in result.stdout
        assert 'heatmap channels mapped 17 of 17 (and the background); limbs mapped 14 of 18' in result.stdout
    else:  # the figure data names its points its own way: one warning, the backbone kept
        assert result.stderr.count("no keypoint of schema 'figure' matches one of schema 'coco18'") == 1


def test_a_source_of_another_backbone_size_is_one_line(reference_dir, synthetic_sets, tmp_path):
    result = train_small(tmp_path / 'run', synthetic_sets['coco17'], 'coco17', reference_dir / OVERFIT,
                         '--config.backbone_width=0.5')  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f'error: {reference_dir / OVERFIT}: a network of backbone width 1, depth 12, 128 channels, not backbone '
        'width 0.5, depth 12, 128 channels'
    )
    assert not (tmp_path / 'run' / 'checkpoints').exists() or not any((tmp_path / 'run' / 'checkpoints').iterdir())


def test_the_config_starts_from_the_published_model_with_its_network():
    config = finetune.get_config()
    assert config.init_from == 'coco-370k' and not config.from_mobilenet
    # The published model's size: a transfer from it needs the same backbone.
    assert (config.num_refinement_stages, config.backbone_width, config.backbone_depth, config.num_channels) == (
        1, 1.0, 12, 128
    )  # fmt: skip
    assert config.num_train_steps == -1 and config.lr_drop_epochs == (39,) and config.num_epochs == 43
