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


# Fixtures that read ../shared: a test using one (directly or through another fixture) needs the folder.
SHARED_FIXTURES = {'reference_dir', 'coco_mini_dir', 'overfit_onnx'}


def in_ci() -> bool:
    """CI=true (what CI services set; .ci/run sets it too): there, tests must not skip for a missing ../shared."""
    return os.environ.get('CI', '').strip().lower() in ('true', '1', 'yes')


def missing_shared_message(path, tests: int | None = None) -> str:
    needing = f'{tests} selected tests need' if tests is not None else 'this test needs'
    return (
        f'CI=true and {path} is missing: {needing} the reference fixtures of the original implementation, '
        'and CI must run them, not skip them (point LWOP_SHARED at the shared folder)'
    )


def _require(path):
    if not path.exists():
        if in_ci():
            pytest.fail(missing_shared_message(path), pytrace=False)
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
    """Tests that compare with the original's fixtures are marked ``parity`` (``-m parity`` runs them). In CI,
    a missing ../shared stops the run here with one line, before any test runs."""
    needing_shared = 0
    for item in items:
        fixtures = set(getattr(item, 'fixturenames', ()))
        if {'reference_dir', 'overfit_onnx'} & fixtures:
            item.add_marker(pytest.mark.parity)
        needing_shared += bool(SHARED_FIXTURES & fixtures)
    missing = next((path for path in (REFERENCE, COCO_MINI) if not path.exists()), None)
    if in_ci() and needing_shared and missing is not None:
        raise pytest.UsageError(missing_shared_message(missing, needing_shared))
