"""The three runtimes give the original's last-stage maps; the ONNX Runtime path stays free of jax/TF."""

import subprocess
import sys

import numpy as np
import pytest

from lwop_jax.errors import ModelFileError
from lwop_jax.inference import backends as runtime


@pytest.fixture(scope='module')
def reference(reference_dir):
    return np.load(reference_dir / 'reference_outputs_1stage.npz')


@pytest.fixture(scope='module')
def exported(reference_dir, model_cache):
    """ONNX and IR of the seed-0 reference checkpoint, made through the converter's cache path."""
    from lwop_jax.checkpoints import export

    onnx_path = runtime.converted_onnx(reference_dir / 'lwop_random_1stage_legacy.pth')
    return onnx_path, export.export_openvino(onnx_path, model_cache / 'ir')


def check_last_stage(backend, reference, case='a'):
    x = reference[f'{case}_input'].transpose(0, 2, 3, 1)
    heatmaps, pafs = backend(np.concatenate([x, x]))
    for ours, key in ((heatmaps, 'heatmaps'), (pafs, 'pafs')):
        ref = reference[f'{case}_stage1_{key}'].transpose(0, 2, 3, 1)
        assert ours.shape == (2,) + ref.shape[1:] and ours.dtype == np.float32
        np.testing.assert_allclose(ours, np.broadcast_to(ref, ours.shape), rtol=1e-4, atol=1e-4)


def test_onnxruntime_backend(exported, reference):
    check_last_stage(runtime.load_backend(exported[0], threads=2), reference)


def test_openvino_backend_reads_onnx_and_ir(exported, reference):
    for path in exported:
        backend = runtime.load_backend(path, 'openvino')
        assert backend.name == 'openvino'
        check_last_stage(backend, reference, 'b')


def test_jax_backend_from_torch_checkpoint(reference_dir, reference):
    backend = runtime.load_backend(reference_dir / 'lwop_random_1stage_zip.pth')
    assert backend.name == 'jax'
    check_last_stage(backend, reference)


def test_backend_errors(tmp_path, exported):
    with pytest.raises(ModelFileError, match='file not found'):
        runtime.load_backend(tmp_path / 'missing.onnx')
    with pytest.raises(ModelFileError, match='unknown backend'):
        runtime.load_backend(exported[0], 'tensorrt')
    with pytest.raises(ModelFileError, match='needs a torch checkpoint or an orbax folder'):
        runtime.load_backend(exported[0], 'jax')
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'not a model')
    with pytest.raises(ModelFileError, match='junk.onnx: ONNX Runtime cannot load'):
        runtime.load_backend(junk)


def test_onnxruntime_flushes_subnormal_weights_of_foreign_files(reference_dir, tmp_path):
    """The original's own export with subnormal weights planted (as training leaves them): ONNX Runtime
    runs it with those weights at zero, and its outputs are those of the same file with zeros there."""
    import onnx
    from onnx import numpy_helper

    def planted_copy(value, name):
        model = onnx.load(str(reference_dir / 'original_1stage_256x456.onnx'))
        for tensor in model.graph.initializer[:6]:
            values = numpy_helper.to_array(tensor).copy()
            values.reshape(-1)[:5] = value
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    subnormals = np.float32(2e-39) * np.arange(1, 6, dtype=np.float32)
    foreign, zeroed = planted_copy(subnormals, 'foreign.onnx'), planted_copy(np.float32(0), 'zeroed.onnx')
    backend = runtime.load_backend(foreign, threads=2)
    assert backend.flushed_weights == 30
    clean = runtime.load_backend(zeroed, threads=2)
    assert clean.flushed_weights == 0
    x = np.random.default_rng(0).normal(size=(1, 256, 456, 3)).astype(np.float32)
    for ours, theirs in zip(backend(x), clean(x)):
        np.testing.assert_array_equal(ours, theirs)
    count, flushed = runtime.flush_subnormal_initializers(foreign)
    assert count == 30
    for tensor in onnx.load_from_string(flushed).graph.initializer:
        values = numpy_helper.to_array(tensor)
        assert not ((values != 0) & (np.abs(values) < np.finfo(np.float32).tiny)).any()


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_cpu_paths_import_neither_jax_nor_tensorflow(exported, backend, tmp_path):
    """The whole inference package, a model file run and decoded, in a fresh interpreter: no jax, no TF."""
    model = exported[0] if backend == 'onnxruntime' else exported[1]
    code = (
        'import sys, pkgutil, importlib, numpy as np\n'
        'import lwop_jax.inference\n'
        'for module in pkgutil.iter_modules(lwop_jax.inference.__path__):\n'
        '    importlib.import_module("lwop_jax.inference." + module.name)\n'
        'from lwop_jax.inference import backends, decode\n'
        f'backend = backends.load_backend({str(model)!r}, {backend!r})\n'
        'heatmaps, pafs = backend(np.zeros((1, 64, 64, 3), np.float32))\n'
        'decode.decode(heatmaps[0], pafs[0])\n'
        'loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "tensorflow"))\n'
        'assert not loaded, loaded\n'
        'print("clean")\n'
    )
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'clean' in result.stdout


def test_published_model_by_name_fails_clearly_offline(tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv('LWOP_JAX_CACHE', str(tmp_path))
    monkeypatch.setenv('LWOP_JAX_URL_COCO_370K', f'http://127.0.0.1:{port}/checkpoint_iter_370000.pth')
    with pytest.raises(ModelFileError) as info:
        runtime.load_backend('coco-370k')
    message = str(info.value)
    assert '\n' not in message and 'cannot download coco-370k' in message and '--checkpoint-path' in message
    assert not any(tmp_path.rglob('*.pth'))
    with pytest.raises(ModelFileError, match='file not found .*coco-370k'):
        runtime.load_backend(tmp_path / 'no-such-model')
