"""Tests of the torch-free, code-free PyTorch checkpoint reader (lwop_jax.checkpoints.torch_file).

The published fixtures in ../shared/reference cover the real formats; small checkpoints built
here opcode by opcode cover tensor geometry (offsets, strides, shared storages) and every
refusal. Nothing here imports torch, and no test ever unpickles untrusted bytes with ``pickle``.
"""

import collections
import pathlib
import pickle
import zipfile

import numpy as np
import pytest
from torch_files import call, dict_of, g, legacy_file, obj, program, tensor, zip_file

from lwop_jax.checkpoints.torch_file import load_torch_file, read_state_dict
from lwop_jax.errors import ModelFileError

LEGACY = 'lwop_random_1stage_legacy.pth'
ZIP = 'lwop_random_1stage_zip.pth'
MOBILENET = 'mobilenet_sgd_format.pth.tar'
OVERFIT = 'lwop_overfit_coco4.pth'


def expect_error(path, *fragments, loader=load_torch_file):
    """Loading ``path`` raises ModelFileError; its one-line message names the file and fragments."""
    with pytest.raises(ModelFileError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message
    assert '\n' not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_assembler_writes_real_pickles():
    # The refusal tests are only meaningful if these opcodes are what pickle would act on.
    assert pickle.loads(program(call(g('builtins', 'len'), obj('abcd')))) == 4
    assert pickle.loads(program(dict_of([('a', obj(1))]))) == {'a': 1}


# --- the published fixtures --------------------------------------------------------------------


@pytest.fixture(scope='module')
def legacy(reference_dir):
    return load_torch_file(reference_dir / LEGACY)


def test_legacy_full_checkpoint(legacy):
    assert list(legacy) == ['state_dict', 'optimizer', 'scheduler', 'iter', 'current_epoch']
    assert legacy['iter'] == 370000 and legacy['current_epoch'] == 123
    state = legacy['state_dict']
    assert isinstance(state, collections.OrderedDict) and len(state) == 250
    assert all(isinstance(v, np.ndarray) for v in state.values())
    counts = collections.Counter(str(v.dtype) for v in state.values())
    assert counts == {'float32': 151 + 66, 'int64': 33}

    w = state['model.0.0.weight']
    assert w.shape == (32, 3, 3, 3) and w.dtype == np.float32 and w.flags.c_contiguous
    assert 0 < np.abs(w).max() < 10 and np.isfinite(w).all()
    assert state['model.3.0.weight'].shape[1:] == (1, 3, 3)  # depthwise
    assert state['refinement_stages.0.trunk.0.initial.0.weight'].shape[:2] == (128, 185)
    assert state['initial_stage.pafs.1.0.weight'].shape[0] == 38
    for key, value in state.items():
        if key.endswith('num_batches_tracked'):
            assert value.shape == () and value.dtype == np.int64 and int(value) == 8
        if key.endswith('running_var'):
            assert (value > 0).all()


def test_legacy_optimizer_and_scheduler(legacy):
    optimizer, scheduler = legacy['optimizer'], legacy['scheduler']
    assert len(optimizer['state']) == 151
    for entry in optimizer['state'].values():
        assert entry['step'].shape == () and entry['step'].dtype == np.float32
        assert float(entry['step']) == 1.0
        assert entry['exp_avg'].shape == entry['exp_avg_sq'].shape
    groups = optimizer['param_groups']
    assert [len(gr['params']) for gr in groups] == [12, 11, 23, 23, 5, 2, 3, 7, 7, 19, 19, 10, 10]
    assert groups[-1]['lr'] == pytest.approx(8e-5) and groups[0]['betas'] == (0.9, 0.999)
    assert isinstance(scheduler['milestones'], collections.Counter)
    assert scheduler['milestones'] == {100: 1, 200: 1, 260: 1}
    assert scheduler['last_epoch'] == 1 and scheduler['_step_count'] == 2


def test_legacy_and_zip_are_bit_identical(reference_dir, legacy):
    from_zip = read_state_dict(reference_dir / ZIP)
    from_legacy = read_state_dict(reference_dir / LEGACY)
    assert list(from_zip) == list(from_legacy) == list(legacy['state_dict'])
    for key, a in from_legacy.items():
        b = from_zip[key]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), key
        assert a.tobytes() == b.tobytes(), key


@pytest.mark.parametrize('name', [OVERFIT, ZIP])
def test_state_dict_only_files(reference_dir, name):
    obj = load_torch_file(reference_dir / name)
    assert list(obj) == ['state_dict']
    state = read_state_dict(reference_dir / name)
    assert len(state) == 250 and state['model.0.0.weight'].shape == (32, 3, 3, 3)


def test_mobilenet_imagenet_checkpoint(reference_dir):
    obj = load_torch_file(reference_dir / MOBILENET)
    assert list(obj) == ['epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer']
    assert obj['arch'] == 'mobilenet' and obj['epoch'] == 1 and obj['best_prec1'] == 0.1
    assert obj['optimizer']['state'] == {}
    assert all(k.startswith('module.') for k in obj['state_dict'])

    state = read_state_dict(reference_dir / MOBILENET)
    assert len(state) == 137
    assert list(state) == [k[len('module.') :] for k in obj['state_dict']]  # order kept
    assert all(k.startswith(('model.', 'fc.')) for k in state)
    assert all(v.dtype == np.float32 for v in state.values())
    assert state['fc.weight'].shape == (1000, 1024) and state['fc.bias'].shape == (1000,)
    assert state['model.13.3.weight'].shape == (1024, 1024, 1, 1)


# --- tensor geometry, in both containers --------------------------------------------------------

GEOMETRY_STORAGES = {
    '0': np.arange(12, dtype=np.float32),
    '1': np.array([7, -3], np.int64),
    '2': np.array([1, 0, 1], np.bool_),
    '3': np.array([0.5, 2], np.float16),
}
GEOMETRY = dict_of(
    [
        ('whole', tensor('FloatStorage', '0', 12, 0, (3, 4), (4, 1))),
        ('transposed', tensor('FloatStorage', '0', 12, 0, (4, 3), (1, 4))),  # same storage
        ('window', tensor('FloatStorage', '0', 12, 5, (2, 3), (3, 1))),  # storage offset
        ('expanded', tensor('FloatStorage', '0', 12, 2, (2, 3), (0, 1))),  # stride 0
        ('scalar', tensor('LongStorage', '1', 2, 1, (), ())),
        ('flags', tensor('BoolStorage', '2', 3, 0, (3,), (1,))),
        ('half', tensor('HalfStorage', '3', 2, 0, (2,), (1,))),
        ('empty', tensor('FloatStorage', '0', 12, 12, (0, 5), (5, 1))),
    ]
)


def check_geometry(state):
    base = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(state['whole'], base.reshape(3, 4))
    np.testing.assert_array_equal(state['transposed'], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state['window'], base[5:11].reshape(2, 3))
    np.testing.assert_array_equal(state['expanded'], [[2, 3, 4], [2, 3, 4]])
    assert state['scalar'].shape == () and state['scalar'].dtype == np.int64
    assert int(state['scalar']) == -3
    assert state['flags'].dtype == np.bool_ and state['flags'].tolist() == [True, False, True]
    assert state['half'].dtype == np.float16 and state['half'].tolist() == [0.5, 2.0]
    assert state['empty'].shape == (0, 5)
    # one storage, as in torch: the views share memory
    assert np.shares_memory(state['whole'], state['transposed'])


def test_geometry_legacy(tmp_path):
    check_geometry(load_torch_file(legacy_file(tmp_path / 'g.pth', GEOMETRY, GEOMETRY_STORAGES)))


def test_geometry_zip_any_top_folder(tmp_path):
    path = zip_file(tmp_path / 'g.pth', GEOMETRY, GEOMETRY_STORAGES, top='some_other_name')
    check_geometry(load_torch_file(path))


def test_newer_dtypes_zip(tmp_path):
    # bfloat16 has a typed storage class; uint16 (torch >= 2.3) only exists as _rebuild_tensor_v3
    # on an UntypedStorage, whose persistent id counts bytes, with the dtype as a torch global.
    ml_dtypes = pytest.importorskip('ml_dtypes')
    bf16 = np.array([1.5, -2.0, 3.0], ml_dtypes.bfloat16)
    u16 = np.array([1, 65535], np.uint16)
    untyped = b'(' + obj('storage') + g('torch.storage', 'UntypedStorage') + obj('1') + obj('cpu') + obj(4) + b't'
    body = dict_of(
        [
            ('bf16', tensor('BFloat16Storage', '0', 3, 0, (3,), (1,))),
            (
                'u16',
                call(
                    g('torch._utils', '_rebuild_tensor_v3'),
                    untyped + b'Q',
                    obj(0),
                    obj((2,)),
                    obj((1,)),
                    obj(False),
                    call(g('collections', 'OrderedDict')),
                    g('torch', 'uint16'),
                ),
            ),
        ]
    )
    state = read_state_dict(zip_file(tmp_path / 'x.pth', body, {'0': bf16, '1': u16}))
    assert state['bf16'].dtype == ml_dtypes.bfloat16 and state['bf16'].tobytes() == bf16.tobytes()
    assert state['u16'].dtype == np.uint16 and state['u16'].tolist() == [1, 65535]


def test_big_endian_is_refused(tmp_path):
    body = dict_of([('w', tensor('FloatStorage', '0', 1, 0, (1,), (1,)))])
    path = zip_file(tmp_path / 'x.pth', body, {'0': np.zeros(1, '>f4')}, byteorder='big')
    expect_error(path, 'big-endian')


@pytest.mark.parametrize('make', [legacy_file, zip_file])
def test_tensor_overrunning_its_storage_is_refused(tmp_path, make):
    # numpy's as_strided does not check bounds: the reader must, or it would read foreign memory.
    body = dict_of([('w', tensor('FloatStorage', '0', 4, 2, (2, 2), (2, 1)))])
    path = make(tmp_path / 'x.pth', body, {'0': np.zeros(4, np.float32)})
    expect_error(path, 'overruns')


def test_legacy_storage_count_mismatch(tmp_path):
    # The pickle says 3 elements, the data section holds 4: reading on would misalign the rest.
    body = dict_of([('w', tensor('FloatStorage', '0', 3, 0, (3,), (1,)))])
    path = legacy_file(tmp_path / 'x.pth', body, {'0': np.zeros(4, np.float32)})
    expect_error(path, 'holds 4 elements, expected 3')


def test_legacy_storage_view(tmp_path):
    # PyTorch 0.x could save a slice of a storage: ('storage', type, root key, location,
    # root numel, (view key, offset, view numel)); the tensor indexes into the slice.
    pid = (
        b'(' + obj('storage') + g('torch', 'DoubleStorage') + obj('0') + obj('cpu') + obj(6) + obj(('0v', 2, 3)) + b't'
    )
    body = dict_of(
        [
            (
                'w',
                call(
                    g('torch._utils', '_rebuild_tensor_v2'),
                    pid + b'Q',
                    obj(1),
                    obj((2,)),
                    obj((1,)),
                    obj(False),
                    call(g('collections', 'OrderedDict')),
                ),
            )
        ]
    )
    path = legacy_file(tmp_path / 'x.pth', body, {'0': np.arange(6, dtype=np.float64)})
    w = load_torch_file(path)['w']
    assert w.dtype == np.float64 and w.tolist() == [3.0, 4.0]


def test_zip_with_a_storage_missing(tmp_path, reference_dir):
    path = tmp_path / 'missing.pth'
    with zipfile.ZipFile(reference_dir / ZIP) as src, zipfile.ZipFile(path, 'w') as dst:
        for info in src.infolist():
            if not info.filename.endswith('/data/7'):
                dst.writestr(info, src.read(info))
    expect_error(path, 'truncated or corrupt')


# --- refusals: no pickled code ever runs ---------------------------------------------------------


def touch_payload(marker):
    return call(g('os', 'system'), obj(f'touch {marker}'))


class ExecOnLoad:
    """A real malicious object: pickling it records builtins.exec with a marker-writing script."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()',)


@pytest.mark.parametrize('container', ['plain', 'legacy', 'zip'])
def test_os_system_is_refused(tmp_path, container):
    marker = tmp_path / 'pwned'
    body = dict_of([('state_dict', touch_payload(marker))])
    path = tmp_path / 'evil.pth'
    if container == 'plain':
        path.write_bytes(program(body))
    elif container == 'legacy':
        legacy_file(path, body, {})
    else:
        zip_file(path, body, {})
    expect_error(path, 'refused to load', 'os.system', 'allow-list')
    expect_error(path, 'os.system', loader=read_state_dict)
    assert not marker.exists()


@pytest.mark.parametrize('container', ['plain', 'legacy', 'zip'])
def test_builtins_exec_is_refused(tmp_path, container):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    if container == 'plain':  # as a user would get it from pickle.dump, default protocol
        path.write_bytes(pickle.dumps(ExecOnLoad(marker)))  # pickling runs nothing
    else:  # the whole object is the exploit; protocol 2 like torch.save
        # (fix_imports=False, or protocol 2 spells the module as Python 2's __builtin__)
        body = pickle.dumps(ExecOnLoad(marker), protocol=2, fix_imports=False)[2:-1]
        (legacy_file if container == 'legacy' else zip_file)(path, body, {})
    expect_error(path, 'refused to load', 'builtins.exec')
    assert not marker.exists()


def test_refusal_inside_a_real_state_dict(tmp_path):
    # Hidden as the storage type of an otherwise ordinary tensor.
    marker = tmp_path / 'pwned'
    pid = b'(' + obj('storage') + touch_payload(marker) + obj('0') + obj('cpu') + obj(1) + b't'
    body = dict_of(
        [
            (
                'w',
                call(
                    g('torch._utils', '_rebuild_tensor_v2'),
                    pid + b'Q',
                    obj(0),
                    obj((1,)),
                    obj((1,)),
                    obj(False),
                    call(g('collections', 'OrderedDict')),
                ),
            )
        ]
    )
    expect_error(zip_file(tmp_path / 'x.pth', body, {'0': np.zeros(1, np.float32)}), 'os.system')
    assert not marker.exists()


def test_torch_module_ids_are_refused(tmp_path):
    # torch.save(model) writes ('module', class, source file, source): loading needs the code.
    body = b'(' + obj('module') + obj('Net') + obj('net.py') + obj('class Net: ...') + b'tQ'
    expect_error(legacy_file(tmp_path / 'x.pth', body, {}), 'persistent id')


# --- broken and foreign files ------------------------------------------------------------------


@pytest.mark.parametrize('name', [LEGACY, ZIP])
@pytest.mark.parametrize('keep', [0.5, 0.999, 10, 3])
def test_truncated_fixtures(tmp_path, reference_dir, name, keep):
    data = (reference_dir / name).read_bytes()
    n = int(len(data) * keep) if keep < 1 else keep
    path = tmp_path / name
    path.write_bytes(data[:n])
    expect_error(path)


def test_legacy_cut_inside_the_last_storage(tmp_path, reference_dir):
    data = (reference_dir / LEGACY).read_bytes()
    path = tmp_path / 'cut.pth'
    path.write_bytes(data[:-1])
    expect_error(path, 'truncated or corrupt')


@pytest.mark.parametrize(
    'content,problem',
    [
        (b'', 'unknown file format'),
        (b'{"state_dict": {"w": [1, 2]}}\n', 'unknown file format'),
        (np.random.default_rng(0).bytes(4096), 'unknown file format'),
        (b'\x80\x02' + np.random.default_rng(1).bytes(4096), ''),  # random opcodes
    ],
)
def test_foreign_bytes(tmp_path, content, problem):
    path = tmp_path / 'foreign.pth'
    path.write_bytes(content)
    expect_error(path, problem)
    expect_error(path, problem, loader=read_state_dict)


def test_zip_that_is_not_torch(tmp_path):
    path = tmp_path / 'other.zip'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('readme.txt', 'hello')
    expect_error(path, 'not a PyTorch checkpoint')


def test_plain_pickle_of_a_list(tmp_path):
    path = tmp_path / 'list.pkl'
    path.write_bytes(pickle.dumps([1, 2, 3]))
    expect_error(path, 'not a PyTorch checkpoint')
    expect_error(path, 'not a PyTorch checkpoint', loader=read_state_dict)


@pytest.mark.parametrize(
    'body,problem',
    [
        (obj([1, 2, 3]), 'no state_dict'),
        (dict_of([('state_dict', obj({'lr': 0.1}))]), "'lr' is a float"),
        (dict_of([('state_dict', obj({}))]), 'no state_dict'),
    ],
)
def test_torch_files_without_weights(tmp_path, body, problem):
    path = legacy_file(tmp_path / 'x.pth', body, {})
    load_torch_file(path)  # a valid torch file ...
    expect_error(path, problem, loader=read_state_dict)  # ... but not a weights file


def test_bare_state_dict_and_prefix_stripping(tmp_path):
    body = dict_of(
        [('module.a', tensor('FloatStorage', '0', 2, 0, (2,), (1,))), ('b', tensor('FloatStorage', '0', 2, 1, (), ()))]
    )
    path = zip_file(tmp_path / 'x.pth', body, {'0': np.array([1, 2], np.float32)})
    state = read_state_dict(path)
    assert list(state) == ['a', 'b'] and state['a'].tolist() == [1, 2] and float(state['b']) == 2


def test_missing_path_and_directory(tmp_path):
    expect_error(tmp_path / 'nope.pth', 'file not found')
    expect_error(str(tmp_path / 'nope.pth'), 'file not found', loader=read_state_dict)
    expect_error(tmp_path, 'is a directory')


def test_no_torch_needed():
    import lwop_jax.checkpoints.torch_file as module

    source = pathlib.Path(module.__file__).read_text()
    assert 'import torch' not in source and 'pickle.load(' not in source
