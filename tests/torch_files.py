"""Writes PyTorch checkpoint files without torch, opcode by opcode, for tests.

A tiny pickle assembler producing exactly the opcodes torch writes, plus both containers (legacy and
zip). Tests use it to build small, broken or malicious checkpoints.
"""

import pickle
import struct
import zipfile

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_TYPES = {
    np.dtype(np.float32): 'FloatStorage',
    np.dtype(np.int64): 'LongStorage',
    np.dtype(np.float64): 'DoubleStorage',
}


def g(module, name):
    """GLOBAL opcode: push module.name (resolved by the unpickler's find_class)."""
    return b'c' + f'{module}\n{name}\n'.encode()


def obj(value):
    """Opcodes that push a plain Python value (pickle's own output without PROTO and STOP)."""
    return pickle.dumps(value, protocol=2)[2:-1]


def call(func, *args):
    """REDUCE: func(*args), each argument given as opcodes."""
    return func + b'(' + b''.join(args) + b'tR'


def dict_of(items):
    return b'}(' + b''.join(obj(k) + v for k, v in items) + b'u'


def tensor(storage_type, key, numel, offset, size, stride):
    """Exactly what torch writes for a tensor: _rebuild_tensor_v2 on a persistent storage id."""
    pid = b'(' + obj('storage') + g('torch', storage_type) + obj(key) + obj('cpu') + obj(numel) + b't'
    return call(
        g('torch._utils', '_rebuild_tensor_v2'),
        pid + b'Q',
        obj(offset),
        obj(tuple(size)),
        obj(tuple(stride)),
        obj(False),
        call(g('collections', 'OrderedDict')),
    )


def program(body):
    return b'\x80\x02' + body + b'.'


def legacy_file(path, body, storages, keys=None):
    """torch's legacy container: magic, version, sys info, object, key list, raw storages."""
    sys_info = {'protocol_version': 1001, 'little_endian': True, 'type_sizes': {'short': 2, 'int': 4, 'long': 4}}
    data = b''.join(pickle.dumps(v, protocol=2) for v in (MAGIC, 1001, sys_info))
    data += program(body) + pickle.dumps(list(storages) if keys is None else keys, protocol=2)
    for array in storages.values():
        data += struct.pack('<q', array.size) + array.tobytes()
    path.write_bytes(data)
    return path


def zip_file(path, body, storages, top='archive', byteorder='little'):
    """torch's zip container: <top>/data.pkl and <top>/data/<key>."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
        zf.writestr(f'{top}/data.pkl', program(body))
        zf.writestr(f'{top}/byteorder', byteorder)
        for key, array in storages.items():
            zf.writestr(f'{top}/data/{key}', array.tobytes())
        zf.writestr(f'{top}/version', '3\n')
    return path


def state_dict_file(path, arrays, *, container='zip', wrap=True):
    """A torch checkpoint holding ``{'state_dict': arrays}`` (or the bare dict), contiguous tensors."""
    storages, items = {}, []
    for i, (name, array) in enumerate(arrays.items()):
        array = np.array(array, order='C')  # (ascontiguousarray would turn 0-d into 1-d)
        key = str(i)
        storages[key] = array.reshape(-1)
        strides = tuple(s // array.itemsize for s in array.strides)
        items.append((name, tensor(_STORAGE_TYPES[array.dtype], key, array.size, 0, array.shape, strides)))
    body = dict_of(items)
    if wrap:
        body = dict_of([('state_dict', body)])
    write = zip_file if container == 'zip' else legacy_file
    return write(path, body, storages)
