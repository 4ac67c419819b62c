"""benchmarks/soak_kill.py --smoke: the kill -9 soak behind README's figure, at 2 trials, so that it cannot rot."""

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip('tensorflow')

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'soak_kill.py'


@pytest.mark.slow
def test_smoke_soak_kills_reruns_and_compares_exactly(coco_mini_dir, tmp_path):
    out = tmp_path / 'soak.json'
    command = [sys.executable, str(SCRIPT), '--smoke', '--coco-mini', str(coco_mini_dir), '--json', str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads(out.read_text())['records']
    assert [r['kind'] for r in records] == ['writing', 'log']
    for record in records:
        # Killed before the end, and the rerun continued from what the kill left complete.
        assert record['killed'], record
        assert record['resumed_from'] == record['expected_resume'] == max(record['complete'], default=0), record
        assert record['identical'], record
    assert '2/2 bit-identical' in done.stdout
