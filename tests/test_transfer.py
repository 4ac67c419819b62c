"""Schema transfer: a trained coco18 network into other keypoint schemas, channel by channel and end to end.

The end-to-end test transfers the original's trained overfit model into a schema that renames and reorders
every keypoint, roots the grouping at the nose (so the nose-neck limb runs the other way) and numbers the
PAF channels afresh: with no training, it must score on the 4 COCO mini images what the coco18 model
scores (the issue measured 0.760 against 0.761; without negating the reversed limb, 0.656).
"""

import json

import numpy as np
import pytest
from flax import nnx

from lwop_jax.checkpoints import orbax_io, transfer
from lwop_jax.cli import convert, evaluate
from lwop_jax.errors import FetchError, InputFileError, ModelFileError
from lwop_jax.model.posenet import PoseNet
from lwop_jax.model.variables import model_size, variables
from lwop_jax.schema import SCHEMA_FOLDER, load_schema, schema_from_json

OVERFIT = 'lwop_overfit_coco4.pth'
MINI_JSON = 'person_keypoints_val2017_mini.json'
STAGE_INPUT = 'refinement_stages.0.trunk.0.initial.0.kernel'


def renamed_coco18() -> dict:
    """coco18 with every keypoint renamed (the neck 'chest', its pair given the other way round), the
    keypoints in another order, the grouping rooted at the nose (nose -> chest: coco18's neck -> nose
    reversed) and default PAF channel numbers (limb i in channels 2i, 2i + 1)."""
    coco18 = json.loads((SCHEMA_FOLDER / 'coco18.json').read_text())
    source = {k: coco18['source'].get(k, k) for k in coco18['keypoints']}
    rename = {k: f'p_{source[k]}' for k in coco18['keypoints']} | {'neck': 'chest'}
    limbs = [[rename[a], rename[b]] for a, b in coco18['limbs']]
    limbs.remove(['chest', 'p_nose'])
    return {
        'name': 'renamed18',
        'keypoints': sorted(rename.values(), reverse=True),
        'derived': {'chest': ['right_shoulder', 'left_shoulder']},
        'source': {rename[k]: source[k] for k in coco18['keypoints'] if k != 'neck'},
        'limbs': [['p_nose', 'chest'], *limbs],
        'completing_limbs': [[rename[a], rename[b]] for a, b in coco18['completing_limbs']],
        'flip_pairs': [[rename[a], rename[b]] for a, b in coco18['flip_pairs']],
        'sigmas': {rename[k]: value for k, value in coco18['sigmas'].items()},
    }


@pytest.fixture(scope='module')
def overfit_path(reference_dir):
    return reference_dir / OVERFIT


@pytest.fixture(scope='module')
def overfit(overfit_path):
    return transfer.load_source(overfit_path)


def arrays(model) -> dict:
    return {key: np.asarray(var.get_value()) for key, var in variables(model).items()}


def fresh(schema, seed=0, num_refinement_stages=1) -> dict:
    """The initialisation a transfer starts from (the same seed gives the same values)."""
    size = model_size(PoseNet()) | {'num_heatmaps': schema.num_heatmaps, 'num_pafs': schema.num_pafs}
    return arrays(PoseNet(num_refinement_stages, **size, rngs=nnx.Rngs(seed)))


def counts(mapping):
    return mapping.keypoints_mapped, mapping.limbs_mapped, mapping.limbs_reversed, mapping.channels_fresh


def test_the_mapping_follows_identity_not_names_or_order():
    coco18, renamed = load_schema('coco18'), schema_from_json(renamed_coco18(), 'renamed18.json')
    mapping = transfer.schema_mapping(coco18, renamed)
    assert counts(mapping) == (18, 19, 1, 0)
    for target, source in mapping.heatmaps[:-1]:
        assert transfer.keypoint_identity(renamed, target) == transfer.keypoint_identity(coco18, source)
        assert renamed.keypoints[target] != coco18.keypoints[source]
    assert mapping.heatmaps[-1] == (18, 18)  # the background
    reversed_channels = {(t, s) for t, s, sign in mapping.pafs if sign < 0}
    neck, nose = coco18.keypoints.index('neck'), coco18.keypoints.index('nose')
    assert reversed_channels == set(zip((0, 1), coco18.paf_channels[coco18.limbs.index((neck, nose))]))

    # Every coco17 keypoint is one of coco18's; 4 of its limbs are not (the shoulder pair, the hips and the
    # nose from the shoulders: coco18 reaches them from the neck), so their 8 PAF channels start fresh.
    assert counts(transfer.schema_mapping(coco18, load_schema('coco17'))) == (17, 14, 0, 8)
    assert transfer.schema_mapping(coco18, load_schema('figure')).keypoints_mapped == 0  # other dataset names
    matched = transfer.schema_mapping(coco18, load_schema('figure'), [('shoulder_r', 'r_sho'), ('neck', 'neck')])
    assert (matched.keypoints_mapped, matched.limbs_mapped) == (2, 1)
    with pytest.raises(InputFileError, match=r"keypoint matches: 'wrist' is not a keypoint of schema 'figure'"):
        transfer.schema_mapping(coco18, load_schema('figure'), [('wrist', 'r_wri')])


def test_mapped_channels_equal_the_sources_exactly_negation_included(overfit, overfit_path):
    """Initial stage heads (kernel and bias), refinement heads and the refinement stage's input rows: each
    mapped channel is the source's, bit for bit, negated for the reversed limb."""
    renamed = schema_from_json(renamed_coco18(), 'renamed18.json')
    model, report = transfer.transferred_model(overfit_path, renamed)
    ours, theirs, mapping = arrays(model), arrays(overfit), report.mapping
    assert report.copied_whole == len(ours) - 9  # 4 heads x (kernel, bias) per stage, and the stage input
    for stage in ('initial_stage', 'refinement_stages.0'):
        for leaf in ('kernel', 'bias'):
            key = f'{stage}.heatmaps.1.0.{leaf}'
            for t, s in mapping.heatmaps:
                np.testing.assert_array_equal(ours[key][..., t], theirs[key][..., s], err_msg=key)
            key = f'{stage}.pafs.1.0.{leaf}'
            for t, s, sign in mapping.pafs:
                np.testing.assert_array_equal(ours[key][..., t], sign * theirs[key][..., s], err_msg=key)
    negated = [(t, s) for t, s, sign in mapping.pafs if sign < 0]
    assert len(negated) == 2 and np.any(theirs['initial_stage.pafs.1.0.bias'][[s for _, s in negated]] != 0)
    rows_ours, rows_theirs = ours[STAGE_INPUT][0, 0], theirs[STAGE_INPUT][0, 0]
    np.testing.assert_array_equal(rows_ours[:128], rows_theirs[:128])
    for t, s in mapping.heatmaps:
        np.testing.assert_array_equal(rows_ours[128 + t], rows_theirs[128 + s])
    for t, s, sign in mapping.pafs:
        np.testing.assert_array_equal(rows_ours[128 + 19 + t], sign * rows_theirs[128 + 19 + s])
    for key in ('model.0.0.kernel', 'cpm.align.0.bias', 'refinement_stages.0.trunk.4.trunk.1.1.mean'):
        np.testing.assert_array_equal(ours[key], theirs[key])


def test_unmatched_channels_keep_their_initialisation(overfit, overfit_path):
    coco17 = load_schema('coco17')
    model, report = transfer.transferred_model(overfit_path, coco17, seed=3)
    ours, initial, theirs = arrays(model), fresh(coco17, seed=3), arrays(overfit)
    assert str(report).endswith(
        'heatmap channels mapped 17 of 17 (and the background); limbs mapped 14 of 18 with 0 reversed; '
        '8 channels initialised fresh'
    )
    mapped = {t for t, _, _ in report.mapping.pafs}
    unmatched = sorted(set(range(36)) - mapped)
    assert len(unmatched) == 8
    for key in ('initial_stage.pafs.1.0.kernel', 'refinement_stages.0.pafs.1.0.bias'):
        np.testing.assert_array_equal(ours[key][..., unmatched], initial[key][..., unmatched])
    rows = [128 + 18 + c for c in unmatched]
    np.testing.assert_array_equal(ours[STAGE_INPUT][0, 0, rows], initial[STAGE_INPUT][0, 0, rows])
    # The neck's heatmap row of the source stage input is read by nothing: coco17 has no neck.
    assert ours[STAGE_INPUT].shape[2] == theirs[STAGE_INPUT].shape[2] - 1 - 2


def test_when_nothing_maps_one_warning_and_the_backbone_is_kept(overfit, caplog, capsys):
    figure = load_schema('figure')
    model = PoseNet(1, **(model_size(overfit) | {'num_heatmaps': 18, 'num_pafs': 32}))
    model.keypoint_schema = figure
    initial = arrays(model)
    report = transfer.transfer_weights(model, overfit, 'coco18.pth')
    transfer.announce(report)
    assert capsys.readouterr().out == ''
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert len(warnings) == 1
    assert warnings[0].startswith("coco18.pth: no keypoint of schema 'figure' matches one of schema 'coco18' (")
    ours, theirs = arrays(model), arrays(overfit)
    for key in ours:
        if key == STAGE_INPUT:  # features copied; then the 17 keypoints' rows fresh, the background's mapped
            np.testing.assert_array_equal(ours[key][0, 0, :128], theirs[key][0, 0, :128])
            np.testing.assert_array_equal(ours[key][0, 0, 128:145], initial[key][0, 0, 128:145])
            np.testing.assert_array_equal(ours[key][0, 0, 145], theirs[key][0, 0, 128 + 18])
            np.testing.assert_array_equal(ours[key][0, 0, 146:], initial[key][0, 0, 146:])
        elif key.endswith(('pafs.1.0.kernel', 'pafs.1.0.bias')):
            np.testing.assert_array_equal(ours[key], initial[key], err_msg=key)
        elif key.endswith(('heatmaps.1.0.kernel', 'heatmaps.1.0.bias')):
            np.testing.assert_array_equal(ours[key][..., :17], initial[key][..., :17], err_msg=key)
            np.testing.assert_array_equal(ours[key][..., 17], theirs[key][..., 18], err_msg=key)
        else:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_a_source_of_another_backbone_size_is_one_line(overfit, tmp_path):
    small = PoseNet(0, 32, backbone_width=0.5, backbone_depth=7)
    small.keypoint_schema = load_schema('coco17')
    with pytest.raises(ModelFileError) as error:
        transfer.transfer_weights(small, overfit, 'big.pth')
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(
        'big.pth: a network of backbone width 1, depth 12, 128 channels, not backbone width 0.5, depth 7, '
        '32 channels as the network it should initialise'
    )


def test_convert_reports_a_bad_schema_file_in_one_line_and_writes_nothing(reference_dir, tmp_path, capsys):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(renamed_coco18() | {'limbs': [['p_nose', 'elbow']]}))
    output = tmp_path / 'out'
    rc = convert.main([str(reference_dir / OVERFIT), '--output', str(output), '--to-schema', str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and not output.exists()
    assert err == f"error: {bad}: limbs[0]: 'elbow' is not one of the keypoints\n"


@pytest.mark.slow
def test_converted_into_a_renamed_schema_it_scores_as_the_coco18_model(reference_dir, coco_mini_dir, overfit_onnx,
                                                                        tmp_path, capsys):  # fmt: skip
    schema_file = tmp_path / 'renamed18.json'
    schema_file.write_text(json.dumps(renamed_coco18()))
    output, onnx = tmp_path / 'renamed', tmp_path / 'renamed.onnx'
    argv = [str(reference_dir / OVERFIT), '--output', str(output), '--onnx', str(onnx), '--to-schema', str(schema_file)]
    assert convert.main(argv) == 0
    out = capsys.readouterr().out
    assert 'schema transfer coco18 -> renamed18 from ' in out
    assert 'heatmap channels mapped 18 of 18 (and the background); limbs mapped 19 of 19 with 1 reversed; ' in out
    assert orbax_io.load_any(output).keypoint_schema.name == 'renamed18'

    def ap(model, name):
        stats, detections = tmp_path / f'{name}_stats.json', tmp_path / f'{name}_detections.json'
        argv = ['--labels', str(coco_mini_dir / MINI_JSON), '--images-folder', str(coco_mini_dir / 'val2017'),
                '--checkpoint-path', str(model), '--stats-json', str(stats), '--output-name', str(detections),
                '--no-progress']  # fmt: skip
        assert evaluate.main(argv) == 0
        return json.loads(stats.read_text())['stats']['AP']

    coco18_ap, renamed_ap = ap(overfit_onnx, 'coco18'), ap(onnx, 'renamed')
    assert coco18_ap > 0.7  # the trained model (0.761), not a broken baseline
    assert renamed_ap == pytest.approx(coco18_ap, abs=0.01)


def test_a_published_name_offline_says_what_to_give_instead(tmp_path, monkeypatch):
    monkeypatch.setenv('LWOP_JAX_CACHE', str(tmp_path))
    monkeypatch.setenv('LWOP_JAX_URL_COCO_370K', 'http://127.0.0.1:9/checkpoint_iter_370000.pth')  # refused
    with pytest.raises(FetchError) as error:
        transfer.load_source('coco-370k')
    assert str(error.value).startswith('cannot download coco-370k from http://127.0.0.1:9/')
    assert str(error.value).endswith(
        'download checkpoint_iter_370000.pth yourself and give its path in place of coco-370k'
    )
    assert list(tmp_path.rglob('*.pth*')) == []


def test_convert_keypoint_matches_pair_keypoints_by_name(reference_dir, tmp_path, capsys):
    """figure reads none of coco18's dataset keypoints; --keypoint-match pairs three by name, and with them
    the two limbs between them (neck-shoulder_r, shoulder_r-elbow_r): their channels are coco18's."""
    output = tmp_path / 'figure'
    matches = ['neck=neck', 'shoulder_r=r_sho', 'elbow_r = r_elb']
    argv = [str(reference_dir / OVERFIT), '--output', str(output), '--to-schema', 'figure']
    assert convert.main(argv + [arg for m in matches for arg in ('--keypoint-match', m)]) == 0
    out = capsys.readouterr().out
    assert 'heatmap channels mapped 3 of 17 (and the background); limbs mapped 2 of 16 with 0 reversed; ' in out
    figure, coco18 = load_schema('figure'), load_schema('coco18')
    ours, theirs = arrays(orbax_io.load_any(output)), arrays(transfer.load_source(reference_dir / OVERFIT))
    key = 'initial_stage.heatmaps.1.0.kernel'
    for yours, source in (('neck', 'neck'), ('shoulder_r', 'r_sho'), ('elbow_r', 'r_elb')):
        np.testing.assert_array_equal(
            ours[key][..., figure.keypoints.index(yours)], theirs[key][..., coco18.keypoints.index(source)]
        )
    key = 'initial_stage.pafs.1.0.bias'
    for yours, source in ((('neck', 'shoulder_r'), ('neck', 'r_sho')), (('shoulder_r', 'elbow_r'), ('r_sho', 'r_elb'))):
        ends = tuple(figure.keypoints.index(k) for k in yours), tuple(coco18.keypoints.index(k) for k in source)
        channels = [schema.paf_channels[schema.limbs.index(limb)] for schema, limb in zip((figure, coco18), ends)]
        np.testing.assert_array_equal(ours[key][list(channels[0])], theirs[key][list(channels[1])])


def test_convert_keypoint_match_errors_are_one_line(reference_dir, tmp_path, capsys):
    output = tmp_path / 'figure'
    source = str(reference_dir / OVERFIT)
    argv = [source, '--output', str(output), '--to-schema', 'figure', '--keypoint-match', 'shoulder_r=r_shoulder']
    assert convert.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: keypoint matches: 'r_shoulder' is not a keypoint of schema 'coco18' (nose, neck, ")
    assert err.count('\n') == 1 and not output.exists()
    usage_errors = {
        '--keypoint-match is for --to-schema': ['--keypoint-match', 'neck=neck'],
        "'neck' is not YOURS=SOURCE (two keypoint names)": ['--to-schema', 'figure', '--keypoint-match', 'neck'],
    }
    for message, flags in usage_errors.items():
        with pytest.raises(SystemExit) as exit_:
            convert.main([source, '--output', str(output), *flags])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not output.exists()
