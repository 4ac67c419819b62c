// lwop serve's page: a camera, an image or a video -> JPEG frames over /v1/stream -> skeletons drawn on a
// canvas over the frame that was sent. One frame is in flight at a time, so the page never runs ahead of the
// service. No build step, no dependency: plain browser APIs.
'use strict';

const MAX_WIDTH = 640;  // frames are scaled down to this width before they are sent
const JPEG_QUALITY = 0.85;

const $ = (id) => document.getElementById(id);
const view = $('view');
const context = view.getContext('2d');
const video = $('source');
const grab = document.createElement('canvas');  // the frame being sent, kept to draw its answer over

const page = {
  model: null,      // GET /v1/model: limbs and colours of the schema
  socket: null,
  source: null,     // 'camera', 'video' or 'image'
  inFlight: false,  // a frame sent and not answered yet
  sentAt: 0,
  sentSource: null,
  image: null,      // an image file waiting for the frame in flight to be answered
  answered: [],     // times of the last answers, for fps
};

function setState(state, error = '') {
  document.body.dataset.state = state;
  document.body.dataset.error = error;
  $('message').textContent = error;
}

function keyHeaders() {
  const key = $('key').value.trim();
  return key ? { 'X-API-Key': key } : {};
}

async function loadModel() {
  const response = await fetch('/v1/model', { headers: keyHeaders() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  page.model = body;
  $('model').textContent =
    `${body.model} · ${body.backend} · ${body.precision} · ${body.keypoint_schema} · height ${body.height_size}`;
}

function openSocket() {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/v1/stream`);
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => {
      const key = $('key').value.trim();
      if (key) socket.send(JSON.stringify({ api_key: key }));  // browsers cannot set WebSocket headers
      resolve(socket);
    };
    socket.onerror = () => reject(new Error('the stream could not be opened'));
    socket.onclose = (event) => {
      if (page.socket === socket) {
        page.socket = null;
        if (page.source) stop(event.reason || `the stream closed (${event.code})`);
      }
    };
    socket.onmessage = (event) => answer(JSON.parse(event.data));
  });
}

async function start(source) {
  stopSource();
  setState('connecting');
  try {
    if (!page.model) await loadModel();
    if (!page.socket) page.socket = await openSocket();
  } catch (error) {
    setState('error', error.message);
    return false;
  }
  page.socket.send(JSON.stringify({ reset: true }));  // a new source: new track ids
  page.source = source;
  $('stop').disabled = false;
  setState('streaming');
  return true;
}

function stopSource() {
  page.source = null;
  if (video.srcObject) video.srcObject.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  video.removeAttribute('src');
  $('stop').disabled = true;
}

function stop(reason = '') {
  stopSource();
  setState(reason ? 'error' : 'idle', reason);
}

// -- frames out ----------------------------------------------------------------------------------------

function capture(drawable, width, height) {
  const scale = Math.min(1, MAX_WIDTH / width);
  grab.width = Math.round(width * scale);
  grab.height = Math.round(height * scale);
  grab.getContext('2d').drawImage(drawable, 0, 0, grab.width, grab.height);
}

function send() {
  if (!page.socket || page.inFlight) return;
  page.inFlight = true;
  page.sentAt = performance.now();
  page.sentSource = page.source;
  grab.toBlob((blob) => {
    if (blob && page.socket) page.socket.send(blob);
    else page.inFlight = false;
  }, 'image/jpeg', JPEG_QUALITY);
}

function sendImage() {
  if (!page.image || page.inFlight) return;
  capture(page.image, page.image.width, page.image.height);
  page.image = null;
  send();
}

function pump() {
  if (page.source !== 'camera' && page.source !== 'video') return;
  if (!page.inFlight && video.readyState >= 2 && video.videoWidth > 0) {
    capture(video, video.videoWidth, video.videoHeight);
    send();
  }
  requestAnimationFrame(pump);
}

async function startCamera() {
  if (!navigator.mediaDevices) {  // browsers offer cameras to secure pages only
    setState('error', 'the camera needs this page over https (or on localhost)');
    return;
  }
  if (!(await start('camera'))) return;
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    await video.play();
    pump();
  } catch (error) {
    stop(`camera: ${error.message}`);
  }
}

async function startFile(file) {
  if (!file) return;
  if (file.type.startsWith('image/')) {
    if (!(await start('image'))) return;
    try {
      page.image = await createImageBitmap(file);
      sendImage();
    } catch (error) {
      stop(`${file.name}: ${error.message}`);
    }
    return;
  }
  if (!(await start('video'))) return;
  video.src = URL.createObjectURL(file);
  video.loop = true;
  try {
    await video.play();
    pump();
  } catch (error) {
    stop(`${file.name}: ${error.message}`);
  }
}

// -- answers in ------------------------------------------------------------------------------------------

function answer(record) {
  page.inFlight = false;
  if (record.error) {  // one frame refused (busy, bad frame): say so and go on with the next
    $('message').textContent = `frame ${record.index}: ${record.error}`;
  } else {
    show(record);
  }
  sendImage();
}

function show(record) {
  const now = performance.now();
  page.answered.push(now);
  while (page.answered.length && now - page.answered[0] > 1000) page.answered.shift();
  const serverMs = Object.values(record.timing_ms).reduce((sum, ms) => sum + ms, 0);
  $('people').textContent = record.people.length;
  $('fps').textContent = page.answered.length;
  $('server-ms').textContent = serverMs.toFixed(0);
  $('round-trip-ms').textContent = (now - page.sentAt).toFixed(0);
  $('message').textContent = '';
  draw(record);
  document.body.dataset.people = String(record.people.length);
  document.body.dataset.source = page.sentSource;
  document.body.dataset.frames = String(Number(document.body.dataset.frames) + 1);
}

function draw(record) {
  view.width = grab.width;
  view.height = grab.height;
  context.drawImage(grab, 0, 0);
  const scale = grab.width / record.width;  // keypoints come in the sent frame's pixels
  const { limbs, colors } = page.model;
  context.lineWidth = Math.max(2, grab.width / 200);
  for (const person of record.people) {
    const points = person.keypoints.map(([x, y, score]) => (score > 0 ? [x * scale, y * scale] : null));
    for (const [a, b] of limbs) {
      if (!points[a] || !points[b]) continue;
      context.strokeStyle = colors[b];
      context.beginPath();
      context.moveTo(...points[a]);
      context.lineTo(...points[b]);
      context.stroke();
    }
    points.forEach((point, k) => {
      if (!point) return;
      context.fillStyle = colors[k];
      context.beginPath();
      context.arc(point[0], point[1], context.lineWidth * 1.5, 0, 2 * Math.PI);
      context.fill();
    });
    if (person.track_id !== null && person.track_id !== undefined) {
      const [x, y] = person.bbox;
      context.fillStyle = '#ff5252';
      context.font = `${Math.max(12, grab.width / 50)}px system-ui, sans-serif`;
      context.fillText(`id ${person.track_id}`, x * scale, Math.max(12, y * scale - 6));
    }
  }
}

$('camera').addEventListener('click', startCamera);
$('file').addEventListener('change', (event) => startFile(event.target.files[0]));
$('stop').addEventListener('click', () => stop());
loadModel().catch((error) => { $('model').textContent = `model: ${error.message}`; });
