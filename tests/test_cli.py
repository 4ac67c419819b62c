"""The commands as users run them: `lwop VERB` and the four scripts, help without jax or tensorflow,
one-line errors, configs by name or path with overrides, quiet output."""

import os
import pathlib
import subprocess
import sys

import pytest

from lwop_jax import errors
from lwop_jax.cli import main as lwop
from lwop_jax.cli import train

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {'infer': 'infer.py', 'evaluate': 'evaluate.py', 'train': 'train.py', 'convert': 'convert_torch_weights.py'}
HEAVY = ('jax', 'jaxlib', 'flax', 'tensorflow', 'orbax')


def run_python(code_or_args, cwd, **kwargs):
    args = ['-c', code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)


def test_version(tmp_path):
    import lwop_jax

    result = run_python(['-m', 'lwop_jax', '--version'], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f'lwop_jax {lwop_jax.__version__}'


@pytest.mark.parametrize('verb', sorted(lwop.COMMANDS))
def test_help_of_every_command_loads_neither_jax_nor_tensorflow(verb, tmp_path):
    code = (
        'import sys\n'
        'from lwop_jax.cli import main\n'
        'try:\n'
        f'    main.main([{verb!r}, "--help"])\n'
        'except SystemExit as exit:\n'
        '    assert exit.code == 0, exit.code\n'
        f'heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})\n'
        'assert not heavy, heavy\n'
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'usage: lwop {verb}' in result.stdout


@pytest.mark.parametrize('verb', sorted(SCRIPTS))
def test_scripts_take_the_flags_of_their_command(verb, tmp_path):
    """`python infer.py --help` and `lwop infer --help` print the same flags and text (only the program
    name differs): one parser definition serves both."""
    script = run_python([str(PROJECT_ROOT / SCRIPTS[verb]), '--help'], tmp_path)
    command = run_python(['-m', 'lwop_jax', verb, '--help'], tmp_path)
    assert script.returncode == command.returncode == 0, script.stderr + command.stderr
    assert script.stdout.startswith(f'usage: {SCRIPTS[verb]}') and command.stdout.startswith(f'usage: lwop {verb}')
    # After the usage paragraph (wrapped by the program name's length): description, flags, help texts.
    assert script.stdout.split('\n\n', 1)[1] == command.stdout.split('\n\n', 1)[1]
    assert (PROJECT_ROOT / SCRIPTS[verb]).read_text().count('\n') < 10  # a shim


def test_missing_training_labels_is_one_line(tmp_path):
    result = run_python(
        [
            '-m',
            'lwop_jax',
            'train',
            '--config',
            'tiny',
            '--workdir',
            str(tmp_path / 'w'),
            f'--config.train_images={tmp_path}',
            '--config.train_labels=/missing.json',
        ],
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.splitlines() == [
        'error: /missing.json: COCO annotation file not found (expected e.g. '
        'annotations/person_keypoints_train2017.json)'
    ], result.stderr


def test_bad_model_file_is_one_line(tmp_path):
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'\x80\x02not a checkpoint')
    result = run_python(['-m', 'lwop_jax', 'convert', str(junk), '--output', str(tmp_path / 'out')], tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {junk}: '), result.stderr
    assert not (tmp_path / 'out').exists()


def test_usage_errors_exit_2(tmp_path):
    result = run_python(['-m', 'lwop_jax', 'convert', 'x.pth', '--output', 'o', '--calibration-images', 'd'], tmp_path)
    assert result.returncode == 2 and '--calibration-images and --calibration-labels are for --precision int8' in (
        result.stderr
    )
    result = run_python(['-m', 'lwop_jax', 'train', '--config', 'tiny', '--workdir', 'w', '--bogus'], tmp_path)
    assert result.returncode == 2 and 'unrecognized arguments: --bogus' in result.stderr
    result = run_python(['-m', 'lwop_jax', 'nothing'], tmp_path)
    assert result.returncode == 2


def test_configs_by_name_and_by_path_are_the_same():
    by_name = train.load_config('tiny')
    by_path = train.load_config(str(PROJECT_ROOT / 'configs' / 'tiny.py'))
    assert by_name.to_dict() == by_path.to_dict()
    assert {'default', 'tiny', 'demo', 'coco_stage1', 'coco_stage2', 'coco_stage3', 'coco_recipe'} <= set(
        train.config_names()
    )


def test_config_overrides_keep_the_types():
    config = train.load_config(
        'coco_recipe',
        [
            ('batch_size', '40'),
            ('coco_dir', '/data/coco'),
            ('stages.stage2.num_train_steps', '1000'),
            ('stages.stage1.augment', 'false'),
            ('stages.stage1.lr_drop_epochs', '(5, 7)'),
            ('stages.stage1.base_lr', '1e-4'),
            ('stages.stage3.lr_drop_epochs', '9'),
        ],
    )
    stage1 = config.stages.stage1
    assert config.batch_size == 40 and stage1.batch_size == 40  # shared keys reach every stage
    assert stage1.train_labels == '/data/coco/annotations/person_keypoints_train2017.json'
    assert config.stages.stage2.num_train_steps == 1000
    assert stage1.augment is False and stage1.lr_drop_epochs == (5, 7) and stage1.base_lr == 1e-4
    assert config.stages.stage3.lr_drop_epochs == (9,)


@pytest.mark.parametrize(
    'overrides, message',
    [
        ([('no_such_key', '1')], "--config.no_such_key: tiny has no key 'no_such_key'"),
        ([('batch_size', 'eight')], "--config.batch_size: 'eight' is not a int"),
        ([('augment', 'perhaps')], "--config.augment: 'perhaps' is not a boolean"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(errors.InputFileError, match=message.replace('(', r'\(').replace(')', r'\)')):
        train.load_config('tiny', overrides)


def test_unknown_config_lists_the_shipped_ones(tmp_path):
    with pytest.raises(errors.InputFileError, match='no_such: no such config file or shipped config .*tiny'):
        train.load_config('no_such')
    with pytest.raises(errors.InputFileError, match='missing.py: config file not found'):
        train.load_config(str(tmp_path / 'missing.py'))
    bad = tmp_path / 'bad.py'
    bad.write_text('x = 1\n')
    with pytest.raises(errors.InputFileError, match='must define get_config'):
        train.load_config(str(bad))


@pytest.mark.slow
def test_train_script_runs_quietly(coco_mini_dir, tmp_path):
    """train.py itself: a few iterations on the COCO mini images, resumed once from TFDS records of the
    same images (the same samples); only the progress bar and nothing from TensorFlow, TFDS, CUDA, absl
    or orbax on the terminal."""
    labels = coco_mini_dir / 'person_keypoints_val2017_mini.json'
    command = [
        str(PROJECT_ROOT / 'train.py'),
        '--config',
        'tiny',
        '--workdir',
        str(tmp_path / 'w'),
        f'--config.train_labels={labels}',
        f'--config.train_images={coco_mini_dir / "val2017"}',
        '--config.val_after=0',
        '--config.crop_size=64',
        '--config.batch_size=2',
        '--config.num_refinement_stages=0',
        '--config.checkpoint_after=2',
        '--config.image_summary_after=0',
    ]
    first = run_python(command + ['--config.num_train_steps=2'], tmp_path, env=dict(os.environ, COLUMNS='80'))
    assert first.returncode == 0, first.stderr[-3000:]
    tfds = ['--config.data_source=tfds', f'--config.tfds_data_dir={tmp_path / "tfds"}']
    second = run_python(command + ['--config.num_train_steps=3'] + tfds, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    for result in (first, second):
        lines = [line for line in result.stderr.replace('\r', '\n').splitlines() if line.strip()]
        noise = [line for line in lines if not line.startswith('train:')]
        assert not noise, noise
        assert result.stdout == ''
    assert sorted(p.name for p in (tmp_path / 'w' / 'checkpoints').iterdir() if p.name.isdigit()) == ['2', '3']
    assert (tmp_path / 'w' / 'tensorboard').is_dir()
    assert list((tmp_path / 'tfds' / 'lwop_coco_person_keypoints').glob('*/1.1.0/*.array_record-*'))


def test_every_exception_class_belongs_to_the_family():
    """All of lwop_jax's exception classes derive from LwopError."""
    import importlib
    import inspect
    import pkgutil

    import lwop_jax

    outsiders = []
    for module_info in pkgutil.walk_packages(lwop_jax.__path__, 'lwop_jax.'):
        if module_info.name.endswith('__main__'):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, errors.LwopError)
            ):
                outsiders.append(f'{module.__name__}.{name}')
    assert not outsiders, outsiders


@pytest.mark.parametrize(
    'case',
    ['no_images_folder', 'no_keypoints_json', 'batch_not_divisible', 'init_from_an_image', 'init_from_mobilenet'],
)
def test_training_bad_input_is_one_line(case, coco_mini_dir, reference_dir, tmp_path):
    """lwop train refuses bad input in one line naming the file (or the key) and the problem, exit status 1."""
    labels, images = coco_mini_dir / 'person_keypoints_val2017_mini.json', coco_mini_dir / 'val2017'
    overrides = {'train_labels': labels, 'train_images': images, 'val_after': 0, 'crop_size': 64, 'batch_size': 2}
    env = dict(os.environ)
    if case == 'no_images_folder':
        overrides['train_images'], expected = tmp_path / 'nowhere', 'nowhere: COCO images folder not found'
    elif case == 'no_keypoints_json':
        not_keypoints = tmp_path / 'instances.json'
        not_keypoints.write_text('{"images": [], "categories": [{"id": 1, "name": "person"}]}')
        overrides['train_labels'], expected = (
            not_keypoints,
            "instances.json: not a COCO annotation file: no 'annotations'",
        )
    elif case == 'batch_not_divisible':
        env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
        overrides['batch_size'], expected = 3, 'batch_size 3 is not divisible by the 2 devices'
    elif case == 'init_from_an_image':
        overrides['init_from'] = sorted(images.glob('*.jpg'))[0]
        expected = f'{overrides["init_from"]}: not a PyTorch checkpoint'
    else:
        overrides['init_from'] = reference_dir / 'mobilenet_sgd_format.pth.tar'
        expected = 'not a Lightweight OpenPose checkpoint (no initial_stage.* tensors; for MobileNet ImageNet'
    command = ['-m', 'lwop_jax', 'train', '--config', 'tiny', '--workdir', str(tmp_path / 'w')]
    result = run_python(command + [f'--config.{key}={value}' for key, value in overrides.items()], tmp_path, env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr[-2000:]
