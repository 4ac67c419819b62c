"""The core install (`pip install lwop_jax`, no extras) meeting an optional dependency: one line naming the
extra to install, exit status 1, never a traceback.

How the core install is made: each command runs in a subprocess whose import system refuses the optional
packages. A finder first on ``sys.meta_path`` raises ModuleNotFoundError for them, with the ``name`` a
missing package gives, so every import of them fails as on an install without the extras, wherever it
sits (lwop_jax's lazy imports and the libraries'). A fresh virtual environment with the core install only
would be the literal test, but it costs minutes of installing on every run. The first case shows that the
blocked install still runs what the core promises (an ONNX model on ONNX Runtime).
"""

import os
import re
import subprocess
import sys

import pytest
from test_layout import OPTIONAL

from lwop_jax.cli.extras import MODULE_EXTRAS

# Everything the extras add that lwop_jax imports (test_layout.py's list of lazily imported packages; the
# `train` extra also brings tensorboard).
NOT_IN_CORE = sorted(OPTIONAL | {'tensorboard'})
# The [jax] extra alone (jax, flax, optax, orbax, ml_collections): no ONNX export, no OpenVINO, no scoring.
JAX_ONLY = sorted(set(NOT_IN_CORE) - {'jax', 'jaxlib', 'flax', 'optax', 'orbax', 'ml_collections', 'ml_dtypes'})
RUN_WITHOUT = """
import sys

class NotInstalled:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in self.names:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None

sys.meta_path.insert(0, NotInstalled(set(sys.argv[1].split(','))))
from lwop_jax.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def lwop_without(missing, argv, cwd, env):
    """``lwop ARGV`` in a subprocess where the packages ``missing`` cannot be imported."""
    command = [sys.executable, '-c', RUN_WITHOUT, ','.join(missing), *map(str, argv)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def env(tmp_path):
    """An empty model cache: a .pth given to ONNX Runtime must be converted, not found converted."""
    return {**os.environ, 'LWOP_JAX_CACHE': str(tmp_path / 'cache')}


@pytest.fixture(scope='module')
def files(reference_dir, coco_mini_dir, overfit_onnx):
    images = coco_mini_dir / 'val2017'
    return {
        'pth': reference_dir / 'lwop_overfit_coco4.pth',
        'onnx': overfit_onnx,
        'image': sorted(images.glob('*.jpg'))[0],
        'images': images,
        'labels': coco_mini_dir / 'person_keypoints_val2017_mini.json',
    }


def assert_names_extra(result, missing, extra):
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    match = re.fullmatch(
        rf'error: (\w+) is not installed: this needs the lwop_jax\[{re.escape(extra)}\] extra '
        rf"\(pip install 'lwop_jax\[{re.escape(extra)}\]'\)",
        lines[0],
    )
    assert match and match.group(1) in missing, lines[0]


def test_every_optional_package_has_an_extra():
    assert set(NOT_IN_CORE) <= set(MODULE_EXTRAS)


def test_the_core_install_runs_onnx_models(files, tmp_path, env):
    """The control: with every extra's package refused, an ONNX model still runs (the blocker breaks nothing
    the core needs), and the command loads none of them."""
    result = lwop_without(
        NOT_IN_CORE,
        ['infer', '--checkpoint-path', files['onnx'], '--images', files['image'], '--json', tmp_path / 'p.json'],
        tmp_path,
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / 'p.json').exists() and 'onnxruntime, fp32' in result.stdout


@pytest.mark.parametrize(
    'missing, argv, extra',
    [
        # A .pth on the default backend (JAX), and handed to ONNX Runtime or OpenVINO (an ONNX export first).
        (NOT_IN_CORE, ['infer', '--checkpoint-path', '{pth}', '--images', '{image}'], 'export'),
        (
            NOT_IN_CORE,
            ['infer', '--checkpoint-path', '{pth}', '--backend', 'onnxruntime', '--images', '{image}'],
            'export',
        ),
        (
            NOT_IN_CORE,
            ['infer', '--checkpoint-path', '{pth}', '--backend', 'openvino', '--images', '{image}'],
            'export',
        ),
        (
            NOT_IN_CORE,
            ['infer', '--checkpoint-path', '{onnx}', '--backend', 'openvino', '--images', '{image}'],
            'openvino',
        ),
        (
            NOT_IN_CORE,
            ['evaluate', '--labels', '{labels}', '--images-folder', '{images}', '--checkpoint-path', '{pth}'],
            'export',
        ),
        # Scoring without pycocotools.
        (
            NOT_IN_CORE,
            [
                'evaluate',
                '--labels',
                '{labels}',
                '--images-folder',
                '{images}',
                '--checkpoint-path',
                '{onnx}',
                '--max-images',
                '1',
                '--no-progress',
            ],
            'eval',
        ),
        (NOT_IN_CORE, ['convert', '{pth}', '--onnx', 'm.onnx'], 'export'),
        (NOT_IN_CORE, ['convert', '{onnx}', '--openvino', 'ir'], 'export'),
        (NOT_IN_CORE, ['train', '--config', 'tiny', '--workdir', 'w'], 'train'),
        (NOT_IN_CORE, ['demo', '--quick', '--out', 'demo'], 'train,export'),
        # Some extras but not others: [jax] without [export]; everything but [openvino].
        (JAX_ONLY, ['convert', '{pth}', '--onnx', 'm.onnx'], 'export'),
        (['openvino', 'nncf'], ['convert', '{onnx}', '--openvino', 'ir'], 'openvino'),
    ],
)
def test_a_missing_extra_is_one_line(missing, argv, extra, files, tmp_path, env):
    result = lwop_without(missing, [a.format(**files) for a in argv], tmp_path, env)
    assert_names_extra(result, missing, extra)
    assert not {'m.onnx', 'ir', 'w', 'demo'} & {p.name for p in tmp_path.iterdir()}  # nothing written
