"""Atomic file writes: a temporary file in the destination's folder, then ``os.replace``.

A reader never sees a half-written file and an interrupted run leaves the previous file intact.
Standard library only (the CPU inference path imports it).
"""

import json
import os
import pathlib
import tempfile


def write_bytes(path, data: bytes) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
        # mkstemp creates the file 0600; give the result the permissions a plain open would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def write_json(path, obj, indent=None) -> pathlib.Path:
    return write_bytes(path, json.dumps(obj, indent=indent).encode('utf-8'))
