"""Read PyTorch checkpoints (``.pth``, ``.pth.tar``) without torch and without running pickled code.

A torch checkpoint is a pickle, and a pickle can call any importable function while it loads.
This reader therefore uses a restricted unpickler: ``find_class`` only hands out the handful of
names a weights file needs (the allow-list below), each replaced by a harmless local stand-in,
and refuses everything else *before* it is called. Tensors come back as ``numpy.ndarray``.

Both serializations of ``torch.save`` are read:

* legacy (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version 1001, sys-info dict, the object, the list of storage keys),
  then for each key in that order the raw storage: an int64 element count and the bytes.
  The storages come *after* the object, so tensors are created as views of empty buffers that
  are filled in afterwards.
* zip (the default since PyTorch 1.6): ``<top>/data.pkl`` plus one member ``<top>/data/<key>``
  per storage; ``<top>`` is named after the file that was saved, so it varies.

Returned arrays are views into their storage buffers, exactly as torch tensors share their
storages: two tensors saved from one storage share memory here too.
"""

import collections
import collections.abc
import os
import pickle
import struct
import zipfile

import numpy as np

from lwop_jax.errors import ModelFileError

try:  # jax depends on ml_dtypes; without it bfloat16 / float8 tensors are refused
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

__all__ = ['load_torch_file', 'read_state_dict']

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _Bad(ModelFileError):
    """Internal: a problem found while reading; load_torch_file prefixes the path."""


def _dtype(name):
    if name in ('bfloat16', 'float8_e4m3fn', 'float8_e5m2'):
        return np.dtype(getattr(ml_dtypes, name)) if ml_dtypes is not None else None
    return np.dtype(name)


# torch's typed storage classes (pickled as `torch.<Name>`) and the element type each holds.
_STORAGE_DTYPES = {
    'FloatStorage': 'float32',
    'DoubleStorage': 'float64',
    'HalfStorage': 'float16',
    'BFloat16Storage': 'bfloat16',
    'LongStorage': 'int64',
    'IntStorage': 'int32',
    'ShortStorage': 'int16',
    'CharStorage': 'int8',
    'ByteStorage': 'uint8',
    'BoolStorage': 'bool',
    'ComplexFloatStorage': 'complex64',
    'ComplexDoubleStorage': 'complex128',
}
# dtype objects (pickled as `torch.<name>`); only _rebuild_tensor_v3 uses them, for the dtypes
# that have no typed storage class (uint16/32/64, float8), together with an UntypedStorage.
_TORCH_DTYPES = (
    'float32',
    'float64',
    'float16',
    'bfloat16',
    'int64',
    'int32',
    'int16',
    'int8',
    'uint8',
    'bool',
    'complex64',
    'complex128',
    'uint16',
    'uint32',
    'uint64',
    'float8_e4m3fn',
    'float8_e5m2',
)


class _StorageType:
    """Stand-in for a torch storage class: it only names an element type and cannot be called."""

    __slots__ = ('name', 'dtype')

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _TorchDType:
    """Stand-in for a torch dtype object such as torch.uint16."""

    __slots__ = ('name',)

    def __init__(self, name):
        self.name = name


class _Storage:
    """The bytes of one storage; ``raw`` is filled in place later for the legacy format."""

    __slots__ = ('dtype', 'numel', 'raw', 'filled')

    def __init__(self, dtype, numel):
        self.dtype, self.numel = dtype, numel
        self.raw = np.empty(numel * dtype.itemsize, np.uint8)
        self.filled = False


def _index(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f'bad tensor {what} {value!r}')
    return value


def _view(storage, storage_offset, size, stride, dtype):
    """A numpy view of ``storage`` with torch's geometry (element offset and element strides)."""
    if not isinstance(storage, _Storage):
        raise _Bad('tensor without a storage')
    size, stride = tuple(size), tuple(stride)
    offset = _index(storage_offset, 'offset')
    if len(size) != len(stride):
        raise _Bad(f'tensor size {size} and stride {stride} differ in length')
    for n in size + stride:
        _index(n, 'size/stride')
    # as_strided does no bounds checks: never let a view reach outside its storage.
    if storage.raw.size % dtype.itemsize:
        raise _Bad(f'storage of {storage.raw.size} bytes is not whole {dtype} elements')
    flat = storage.raw.view(dtype)
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise _Bad(f'tensor of size {size} at offset {offset} overruns its storage of {flat.size} elements')
    base = flat[min(offset, flat.size) :]
    return np.lib.stride_tricks.as_strided(base, shape=size, strides=tuple(s * dtype.itemsize for s in stride))


# Stand-ins for torch's rebuild functions, same signatures; requires_grad, hooks and metadata
# mean nothing for an array.
def _rebuild_tensor(storage, storage_offset, size, stride):
    return _view(storage, storage_offset, size, stride, getattr(storage, 'dtype', None))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _view(storage, storage_offset, size, stride, getattr(storage, 'dtype', None))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _TorchDType):
        raise _Bad('_rebuild_tensor_v3 without a dtype')
    np_dtype = _dtype(dtype.name)
    if np_dtype is None:
        raise _Bad(f'tensor dtype {dtype.name} needs the ml_dtypes package')
    return _view(storage, storage_offset, size, stride, np_dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data  # an nn.Parameter is just its tensor here


# The allow-list: the only globals a weights file may name, mapped to local stand-ins.
_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('collections', 'Counter'): collections.Counter,  # MultiStepLR milestones
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch', 'UntypedStorage'): _StorageType('UntypedStorage', np.dtype(np.uint8)),
    ('torch.storage', 'UntypedStorage'): _StorageType('UntypedStorage', np.dtype(np.uint8)),
}
_ALLOWED.update({('torch', name): _TorchDType(name) for name in _TORCH_DTYPES})
_ALLOWED.update({('torch', name): _StorageType(name, _dtype(dt)) for name, dt in _STORAGE_DTYPES.items()})


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and hands storages to ``get_storage``."""

    def __init__(self, file, get_storage):
        super().__init__(file, encoding='utf-8')
        self._get_storage = get_storage

    def find_class(self, module, name):
        # Every GLOBAL / STACK_GLOBAL / INST / OBJ / EXT opcode comes through here, so nothing that
        # is not listed is ever imported, let alone called.
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            pass
        raise _Bad(
            f'refused to load: the pickle references {module}.{name}, which is not on the allow-list of a weights file'
        )

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]); others are refused
        # ('module' ids mean a whole nn.Module with its source code was pickled).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ('storage', b'storage')):
            raise _Bad(f'unsupported persistent id {str(pid)[:60]}')
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise _Bad('persistent id without a storage type')
        if storage_type.dtype is None:
            raise _Bad(f'{storage_type.name} tensors need the ml_dtypes package')
        key = key.decode('ascii') if isinstance(key, bytes) else str(key)
        return self._get_storage(
            storage_type.dtype, key, _index(numel, 'storage size'), pid[5] if len(pid) == 6 else None
        )


def _check_little_endian(little):
    if not little:
        raise _Bad('big-endian checkpoints are not supported')


def _load_legacy(f, file_size):
    storages = {}  # key -> _Storage, in order of first use

    def get_storage(dtype, key, numel, view_metadata):
        if numel * dtype.itemsize > file_size:  # a bogus size must not allocate terabytes
            raise _Bad(f'storage {key} of {numel} elements is larger than the file')
        if key not in storages:
            storages[key] = _Storage(dtype, numel)
        storage = storages[key]
        if storage.dtype != dtype or storage.numel != numel:
            raise _Bad(f'storage {key} is declared twice with different types or sizes')
        if view_metadata is None:
            return storage
        # PyTorch < 1.0 could save a storage view (a slice of a storage) as (key, offset, size);
        # a tensor on it is re-based onto the root storage by this small wrapper.
        _view_key, view_offset, view_size = view_metadata
        if _index(view_offset, 'view offset') + _index(view_size, 'view size') > numel:
            raise _Bad(f'storage view of {key} overruns it')
        return _StorageView(storage, view_offset, view_size)

    def load():
        return _RestrictedUnpickler(f, get_storage).load()

    magic = load()
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise _Bad("not a PyTorch checkpoint (a pickle, but not torch's legacy format)")
    version = load()
    if type(version) is not int or version != _LEGACY_PROTOCOL:
        raise _Bad(f'unsupported legacy protocol version {str(version)[:20]}')
    sys_info = load()
    if not isinstance(sys_info, dict):
        raise _Bad('bad sys-info record')
    _check_little_endian(sys_info.get('little_endian', True))
    result = load()
    keys = load()
    if not isinstance(keys, list):
        raise _Bad('bad storage key list')
    for key in keys:
        storage = storages.get(key.decode('ascii') if isinstance(key, bytes) else key)
        if storage is None:
            raise _Bad(f'storage {key!r} is listed but never used')
        header = f.read(8)
        if len(header) != 8:
            raise _Bad(f'truncated or corrupt (file ends before storage {key})')
        (numel,) = struct.unpack('<q', header)
        if numel != storage.numel:
            raise _Bad(f'storage {key} holds {numel} elements, expected {storage.numel}')
        if f.readinto(memoryview(storage.raw)) != storage.raw.size:
            raise _Bad(f'truncated or corrupt (storage {key} is cut short)')
        storage.filled = True
    missing = [k for k, s in storages.items() if not s.filled]
    if missing:
        raise _Bad(f'truncated or corrupt (no data for storage {missing[0]})')
    return result


class _StorageView(_Storage):
    """A legacy storage view: shares the root's buffer from an element offset on."""

    __slots__ = ()

    def __init__(self, root, offset, size):
        self.dtype, self.numel, self.filled = root.dtype, size, True
        start = offset * root.dtype.itemsize
        self.raw = root.raw[start : start + size * root.dtype.itemsize]


def _load_zip(f, file_size):
    with zipfile.ZipFile(f) as zf:
        pkl_names = [n for n in zf.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
        if len(pkl_names) != 1:
            raise _Bad('not a PyTorch checkpoint (a zip file without a single <top>/data.pkl)')
        top = pkl_names[0][: -len('data.pkl')]
        if top + 'byteorder' in zf.namelist():
            _check_little_endian(zf.read(top + 'byteorder').strip() == b'little')
        storages = {}

        def get_storage(dtype, key, numel, view_metadata):
            if view_metadata is not None:
                raise _Bad('storage views do not occur in zip checkpoints')
            if key not in storages:
                info = zf.getinfo(f'{top}data/{key}')  # KeyError when missing
                if info.file_size < numel * dtype.itemsize or (
                    info.compress_type == zipfile.ZIP_STORED and info.file_size > file_size
                ):
                    raise _Bad(f'truncated or corrupt (bad size of storage {key})')
                storage = _Storage(dtype, numel)
                with zf.open(info) as member:
                    if member.readinto(memoryview(storage.raw)) != storage.raw.size:
                        raise _Bad(f'truncated or corrupt (storage {key} is cut short)')
                storages[key] = storage
            return storages[key]

        with zf.open(pkl_names[0]) as pkl:
            return _RestrictedUnpickler(pkl, get_storage).load()


def load_torch_file(path):
    """Load a whole torch checkpoint: dicts, lists, numbers, strings, and tensors as ndarrays.

    Raises ModelFileError (and nothing else) for a missing, unreadable, corrupt or non-torch
    file, and for any pickle that names a global outside the allow-list.
    """
    name = os.fspath(path)
    try:
        if os.path.isdir(name):
            raise _Bad('is a directory')
        with open(name, 'rb') as f:
            head = f.read(4)
            f.seek(0)
            size = os.fstat(f.fileno()).st_size
            if head == b'PK\x03\x04':
                return _load_zip(f, size)
            # torch always wrote its legacy pickles with protocol 2; accept any binary protocol
            # so that a plain (possibly malicious) pickle still gets a precise refusal.
            if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
                return _load_legacy(f, size)
            raise _Bad('not a PyTorch checkpoint (unknown file format)')
    except _Bad as e:  # first: it is a ModelFileError without the file's name
        raise ModelFileError(f'{name}: {e}') from None
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(f'{name}: file not found') from None
    except IsADirectoryError:
        raise ModelFileError(f'{name}: is a directory') from None
    except PermissionError:
        raise ModelFileError(f'{name}: permission denied') from None
    except Exception as e:
        raise ModelFileError(f'{name}: truncated or corrupt ({type(e).__name__}: {e})'.replace('\n', ' ')) from e


def read_state_dict(path):
    """The weights of a checkpoint as ``{name: ndarray}`` in file order, ``module.`` prefixes removed.

    Accepts a training checkpoint with a ``'state_dict'`` entry (the original's checkpoints, the
    MobileNet ImageNet ``.pth.tar``) or a bare state dict.
    """
    obj = load_torch_file(path)
    name = os.fspath(path)
    state = obj.get('state_dict') if isinstance(obj, collections.abc.Mapping) else None
    if state is None:
        state = obj
    if not isinstance(state, collections.abc.Mapping) or not state:
        raise ModelFileError(f'{name}: no state_dict / not a weights file (found {type(state).__name__})')
    weights = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ModelFileError(
                f'{name}: no state_dict / not a weights file (entry {key!r} is a {type(value).__name__}, not a tensor)'
            )
        short = key[len('module.') :] if key.startswith('module.') else key  # DataParallel
        if short in weights:
            raise ModelFileError(f'{name}: state_dict has {short!r} twice after removing module.')
        weights[short] = value
    return weights
