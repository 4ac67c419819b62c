"""Shared test fixtures: the reference files of the original implementation live in ../shared."""

import os
import pathlib

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('LWOP_SHARED', PROJECT_ROOT.parent / 'shared'))
REFERENCE = SHARED / 'reference'
COCO_MINI = SHARED / 'data' / 'coco_val_mini'

_SKIP_REASON = (
    f'needs the reference fixtures of the original implementation in {SHARED} '
    '(absent in a fresh clone; set LWOP_SHARED to point elsewhere)'
)


def _require(path):
    if not path.exists():
        pytest.skip(f'{_SKIP_REASON}: {path} not found')
    return path


@pytest.fixture(scope='session')
def reference_dir():
    """Path of ../shared/reference; skips the test when it is absent."""
    return _require(REFERENCE)


@pytest.fixture(scope='session')
def coco_mini_dir():
    """Path of ../shared/data/coco_val_mini; skips the test when it is absent."""
    return _require(COCO_MINI)


@pytest.fixture(scope='session')
def model_cache(tmp_path_factory):
    """LWOP_JAX_CACHE pointed at one temporary folder for the session: models converted on the fly
    (.pth -> ONNX) are made once and shared by the test modules, and nothing goes to the home folder."""
    cache = tmp_path_factory.mktemp('lwop_jax_cache')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('LWOP_JAX_CACHE', str(cache))
        yield cache


@pytest.fixture(scope='session')
def overfit_onnx(reference_dir, model_cache):
    """The trained reference model (lwop_overfit_coco4.pth) as ONNX, converted once per session."""
    from lwop_jax.inference import backends as runtime

    return runtime.converted_onnx(reference_dir / 'lwop_overfit_coco4.pth')


def pytest_collection_modifyitems(items):
    """Tests that compare with the original's fixtures are marked ``parity`` (``-m parity`` runs them)."""
    for item in items:
        if {'reference_dir', 'overfit_onnx'} & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.parity)
