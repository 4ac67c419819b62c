"""The `lwop` command run by tests: in a subprocess (``python -m lwop_jax``, as a user runs it) or in-process."""

import os
import subprocess
import sys

from lwop_jax.cli import main


def lwop(*arguments, cwd, check: bool = True) -> subprocess.CompletedProcess:
    """``lwop ARGUMENTS`` in a subprocess on the CPU; with ``check``, asserts exit status 0 (showing the output's
    end otherwise)."""
    result = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', *map(str, arguments)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def lwop_in_process(capsys, *arguments) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``lwop ARGUMENTS`` run in this process."""
    code = main.main([str(a) for a in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
