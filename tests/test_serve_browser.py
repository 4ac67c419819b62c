"""The page of lwop serve in a real browser: Debian's headless chromium, driven by Playwright (no browser
download), with a fake camera playing a clip of people made here. The page's state is read back (data-
attributes) and the canvas is checked for the skeleton's colour. ``LWOP_SERVE_SCREENSHOT=docs/serve_page.png``
also saves the screenshot the README shows."""

import os
import pathlib

import cv2
import pytest

pytest.importorskip('starlette', reason='needs the serve extra')
sync_api = pytest.importorskip('playwright.sync_api', reason='needs playwright (the dev extra)')

from serve_helpers import shifted_frames, start_server, stop_server  # noqa: E402

CHROMIUM = pathlib.Path('/usr/bin/chromium')
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; CI has it)"
    ),
]
FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
]
# Pixels of the canvas in the skeleton's colour (the schema's, from /v1/model), within a rounding step.
COUNT_SKELETON_PIXELS = """async () => {
  const model = await (await fetch('/v1/model')).json();
  const hex = model.colors[1];
  const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const canvas = document.getElementById('view');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - rgb[0]) + Math.abs(data[i + 1] - rgb[1]) + Math.abs(data[i + 2] - rgb[2]) <= 6) count++;
  }
  return count;
}"""


@pytest.fixture(scope='module')
def skiers(coco_mini_dir):
    return coco_mini_dir / 'val2017' / '000000197388.jpg'  # 640 x 392, five skiers


@pytest.fixture(scope='module')
def server(overfit_onnx, tmp_path_factory):
    running = start_server(overfit_onnx, tmp_path_factory.mktemp('serve_page'), '--workers', '1', '--threads', '2')
    yield running
    stop_server(running)


def write_y4m(path, frames, fps: int = 10):
    """A raw YUV 4:2:0 clip (what chromium's fake camera plays)."""
    height, width = frames[0].shape[:2]
    with open(path, 'wb') as clip:
        clip.write(f'YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n'.encode())
        for frame in frames:
            clip.write(b'FRAME\n' + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


def test_page_draws_people_from_camera_and_file(server, skiers, tmp_path):
    clip = tmp_path / 'clip.y4m'
    write_y4m(clip, shifted_frames(cv2.imread(str(skiers)), frames=10, step=4))
    problems = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / 'profile'),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f'--use-file-for-fake-video-capture={clip}'],
            viewport={'width': 760, 'height': 620},
        )
        try:
            page = browser.new_page()
            page.on('pageerror', lambda error: problems.append(str(error)))
            page.on('console', lambda message: message.type == 'error' and problems.append(message.text))
            page.goto(server.url)
            page.click('#camera')
            page.wait_for_function(
                '() => Number(document.body.dataset.frames) >= 3 && Number(document.body.dataset.people) >= 1',
                timeout=120_000,
            )
            assert page.get_attribute('body', 'data-state') == 'streaming'
            assert page.evaluate(COUNT_SKELETON_PIXELS) > 100  # limbs of several people, 3 px wide
            assert int(page.text_content('#people')) >= 1 and page.text_content('#fps') != '–'
            screenshot = os.environ.get('LWOP_SERVE_SCREENSHOT') or str(tmp_path / 'page.png')
            page.screenshot(path=screenshot)
            # An image file: one frame, the skiers unchanged by the camera's YUV round trip.
            page.click('#stop')
            page.set_input_files('#file', str(skiers))
            page.wait_for_function("() => document.body.dataset.source === 'image'", timeout=120_000)
            assert int(page.get_attribute('body', 'data-people')) >= 4
        finally:
            browser.close()
    assert problems == []
