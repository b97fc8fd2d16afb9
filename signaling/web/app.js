// The demo page: join a room, publish camera and microphone (three simulcast
// layers), show every remote video in a grid with a quality selector and live
// stats. Query parameters: room, name, token (an access token, for servers
// without --dev), url (the signaling server; default: this page's origin),
// simulcast=0, autojoin=1.
//
// For automated tests the page exposes `window.sfuDemo` (see the end of this
// file) and marks its state on <body data-state="idle|joining|joined|left|reconnecting|error">.
// When the server moves the call (`leave` with reason `migrate`: its node is
// draining) the page joins the same room again, on its own. When the WebSocket
// drops, the client resumes the session (state `reconnecting`, then `joined`
// again); if the server no longer has it (`closed` with `resume_failed`), the
// page joins again the same way.
// Remote tiles are <section class="tile" data-track-id data-participant
// data-identity> with a <select data-role="quality">.

import { SfuClient } from './sfu-client.js';

const params = new URLSearchParams(location.search);
const $ = (selector) => document.querySelector(selector);

const state = {
  client: null,
  localStream: null,
  localTracks: [], // from client.publish()
  tiles: new Map(), // trackId -> {el, video, select, statsEl, mode, observer, lastSize, prev}
  localTile: null,
  audioSinks: new Map(), // trackId -> <audio>
  statsTimer: null,
  lastStats: {},
  events: [], // recent client events, for debugging and tests
  error: null,
  joinArgs: null, // {room, name, simulcast, identity} of the last join, for rejoin()
};

const REJOIN_ATTEMPTS = 5;

function setState(value) {
  document.body.dataset.state = value;
}

function status(text, isError = false) {
  const el = $('#status');
  el.textContent = text;
  el.classList.toggle('error', isError);
  if (isError) state.error = text;
}

function logEvent(type, detail) {
  state.events.push({ t: Math.round(performance.now()), type, detail });
  if (state.events.length > 300) state.events.splice(0, state.events.length - 300);
}

function randomSuffix() {
  const bytes = new Uint8Array(3);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// --- tokens ---------------------------------------------------------------------------

// `identity`: the one to ask for (a rejoin keeps its own); default: a new one.
async function obtainToken(room, name, identity = null) {
  const serverUrl = params.get('url') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/rtc`;
  const token = params.get('token');
  if (token) return { token, url: serverUrl };
  // Identity must be unique in a room (a second session with the same one
  // replaces the first), so two tabs with the same name get different ones.
  const q = new URLSearchParams({ room, identity: identity || `${name}-${randomSuffix()}`, name });
  const response = await fetch(`/v1/dev/token?${q}`, { cache: 'no-store' });
  if (response.status === 404) {
    throw new Error('this server does not hand out dev tokens (it runs without --dev): open the page with ?token=<access token>');
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((body && body.error && body.error.message) || `token request failed: HTTP ${response.status}`);
  }
  return { token: body.token, url: params.get('url') || body.url };
}

// --- tiles ----------------------------------------------------------------------------

function newTile() {
  const el = $('#tile-template').content.firstElementChild.cloneNode(true);
  $('#grid').append(el);
  return el;
}

function participantLabel(rt) {
  const p = rt.participant || (rt.participantId && state.client.participants.get(rt.participantId));
  if (!p) return rt.trackId;
  return p.name || p.identity || p.id;
}

function addLocalTile(stream) {
  const el = newTile();
  el.id = 'tile-local';
  el.dataset.local = 'true';
  el.querySelector('[data-role=label]').textContent = `${state.client.self.name} (you)`;
  el.querySelector('select').remove();
  const video = el.querySelector('video');
  video.srcObject = stream;
  video.classList.add('mirror');
  state.localTile = { el, video, statsEl: el.querySelector('[data-role=stats]'), prev: {} };
}

function addRemoteTrack(rt) {
  if (rt.kind === 'audio') {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.dataset.trackId = rt.trackId;
    audio.srcObject = rt.stream;
    $('#audio-sinks').append(audio);
    audio.play().catch(() => {});
    state.audioSinks.set(rt.trackId, audio);
    return;
  }
  const el = newTile();
  el.dataset.trackId = rt.trackId;
  el.dataset.participant = rt.participantId || '';
  el.dataset.identity = rt.participant ? rt.participant.identity : '';
  el.querySelector('[data-role=label]').textContent = participantLabel(rt);
  el.querySelector('[data-role=muted]').hidden = !rt.muted;
  const video = el.querySelector('video');
  video.srcObject = rt.stream;
  video.play().catch(() => {});
  const select = el.querySelector('select[data-role=quality]');
  const tile = { el, video, select, statsEl: el.querySelector('[data-role=stats]'), mode: 'auto', lastSize: null, sizeTimer: null, prev: {} };
  state.tiles.set(rt.trackId, tile);
  select.addEventListener('change', () => applyQuality(rt.trackId, select.value));
  // Report the rendered size; in auto mode it is what chooses the layer.
  tile.observer = new ResizeObserver(() => scheduleSize(rt.trackId));
  tile.observer.observe(video);
  applyQuality(rt.trackId, 'auto');
}

// auto: ask for the best layer and let the rendered size (set_video_size)
// choose among the layers. An explicit choice is a ceiling that the tile's
// size must not lower, so it reports the track's largest layer size instead.
function applyQuality(trackId, mode) {
  const tile = state.tiles.get(trackId);
  if (!tile || !state.client) return;
  tile.mode = mode;
  tile.el.dataset.quality = mode;
  if (tile.select.value !== mode) tile.select.value = mode;
  state.client.setQuality(trackId, mode === 'auto' ? 'high' : mode);
  sendSize(trackId, true);
}

function fullSize(trackId) {
  const rt = state.client && state.client.remoteTracks.get(trackId);
  const layers = (rt && rt.info && rt.info.layers) || [];
  let width = 0;
  let height = 0;
  for (const l of layers) {
    width = Math.max(width, l.width || 0);
    height = Math.max(height, l.height || 0);
  }
  // Unknown layer sizes: as large as the protocol allows.
  return width && height ? [width, height] : [65535, 65535];
}

function scheduleSize(trackId) {
  const tile = state.tiles.get(trackId);
  if (!tile || tile.sizeTimer) return;
  tile.sizeTimer = setTimeout(() => {
    tile.sizeTimer = null;
    sendSize(trackId, false);
  }, 200);
}

function sendSize(trackId, force) {
  const tile = state.tiles.get(trackId);
  if (!tile || !state.client) return;
  let width;
  let height;
  if (tile.mode === 'auto') {
    const dpr = window.devicePixelRatio || 1;
    const rect = tile.video.getBoundingClientRect();
    const hidden = tile.el.hidden || rect.width === 0 || rect.height === 0;
    width = hidden ? 0 : Math.round(rect.width * dpr);
    height = hidden ? 0 : Math.round(rect.height * dpr);
  } else {
    [width, height] = fullSize(trackId);
  }
  const key = `${width}x${height}`;
  if (!force && tile.lastSize === key) return;
  tile.lastSize = key;
  tile.el.dataset.videoSize = key;
  state.client.setVideoSize(trackId, width, height);
}

function removeRemoteTrack(rt) {
  const audio = state.audioSinks.get(rt.trackId);
  if (audio) {
    audio.srcObject = null;
    audio.remove();
    state.audioSinks.delete(rt.trackId);
  }
  const tile = state.tiles.get(rt.trackId);
  if (!tile) return;
  tile.observer.disconnect();
  clearTimeout(tile.sizeTimer);
  tile.video.srcObject = null;
  tile.el.remove();
  state.tiles.delete(rt.trackId);
}

// --- stats ----------------------------------------------------------------------------

function kbps(prev, bytes, timestamp) {
  if (prev.bytes == null || bytes == null || timestamp <= prev.timestamp) return null;
  return Math.round(((bytes - prev.bytes) * 8) / (timestamp - prev.timestamp));
}

async function refreshStats() {
  const client = state.client;
  if (!client || client.closed) return;
  const remote = await client.remoteTrackStats();
  state.lastStats = remote;
  for (const [trackId, s] of Object.entries(remote)) {
    const tile = state.tiles.get(trackId);
    if (!tile) continue;
    const rate = kbps(tile.prev, s.bytesReceived, s.timestamp);
    tile.prev = { bytes: s.bytesReceived, timestamp: s.timestamp };
    const total = (s.packetsReceived || 0) + Math.max(0, s.packetsLost || 0);
    const loss = total ? ((100 * Math.max(0, s.packetsLost || 0)) / total).toFixed(1) : '0.0';
    const res = s.frameWidth ? `${s.frameWidth}x${s.frameHeight}` : 'no video';
    const fps = s.framesPerSecond != null ? `${Math.round(s.framesPerSecond)} fps` : '';
    tile.statsEl.textContent = `${res} ${fps} · ${rate ?? '-'} kbit/s · layer ${s.layer ?? '?'} · loss ${loss}%`;
    tile.el.dataset.frameWidth = s.frameWidth ?? '';
    tile.el.dataset.layer = s.layer ?? '';
  }
  if (state.localTile) {
    const local = await client.localTrackStats();
    const parts = [];
    for (const lt of Object.values(local)) {
      if (lt.kind !== 'video') continue;
      for (const e of lt.encodings) {
        const key = `${e.ssrc}`;
        const prev = state.localTile.prev[key] || {};
        const rate = kbps(prev, e.bytesSent, e.timestamp);
        state.localTile.prev[key] = { bytes: e.bytesSent, timestamp: e.timestamp };
        const res = e.frameWidth ? `${e.frameWidth}x${e.frameHeight}` : 'off';
        parts.push(`${e.rid ?? '-'} ${res} ${rate ?? '-'}k`);
      }
    }
    state.localTile.statsEl.textContent = parts.join(' · ') || 'not sending video';
  }
}

// --- join / leave ---------------------------------------------------------------------

async function join(room, name, { simulcast = true, identity = null } = {}) {
  if (state.client) throw new Error('already joined');
  state.joinArgs = { room, name, simulcast, identity };
  setState('joining');
  status('joining…');
  $('#join').disabled = true;
  try {
    const { token, url } = await obtainToken(room, name, identity);
    const client = new SfuClient();
    state.client = client;
    wireClient(client);
    await client.connect(url, token);
  } catch (err) {
    if (state.client) state.client.leave(0).catch(() => {});
    state.client = null;
    setState('error');
    status(`join failed: ${err.message}`, true);
    $('#join').disabled = false;
    throw err;
  }
  const client = state.client;
  state.joinArgs.identity = client.self.identity;
  $('#join-form').hidden = true;
  $('#controls').hidden = false;
  $('#room-label').textContent = `room ${client.room.name} as ${client.self.name}`;
  setState('joined');
  status('joined; starting camera…');
  state.statsTimer = setInterval(() => refreshStats().catch(() => {}), 1000);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    });
  } catch (err) {
    status(`no camera or microphone (${err.name}): receiving only`, true);
    return;
  }
  if (state.client !== client) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  state.localStream = stream;
  addLocalTile(stream);
  try {
    state.localTracks = await client.publish(stream, { simulcast, videoName: 'camera', audioName: 'microphone' });
  } catch (err) {
    status(`publish failed: ${err.message}`, true);
    return;
  }
  document.body.dataset.published = 'true';
  status(`publishing ${state.localTracks.map((t) => t.kind).join(' + ')}${simulcast ? ' (simulcast)' : ''}`);
}

function wireClient(client) {
  const on = (type, fn) => client.addEventListener(type, (e) => {
    logEvent(type, e.detail && e.detail.trackId ? { trackId: e.detail.trackId, quality: e.detail.quality } : undefined);
    if (fn) fn(e.detail);
  });
  on('track', addRemoteTrack);
  on('trackremoved', removeRemoteTrack);
  on('trackupdated', (rt) => {
    const tile = state.tiles.get(rt.trackId);
    if (!tile) return;
    tile.el.dataset.participant = rt.participantId || '';
    tile.el.dataset.identity = rt.participant ? rt.participant.identity : '';
    tile.el.querySelector('[data-role=label]').textContent = participantLabel(rt);
  });
  on('trackmuted', ({ trackId, muted }) => {
    const tile = state.tiles.get(trackId);
    if (tile) tile.el.querySelector('[data-role=muted]').hidden = !muted;
  });
  on('layerchanged', ({ trackId, quality }) => {
    const tile = state.tiles.get(trackId);
    if (tile) tile.el.dataset.layer = quality;
  });
  on('participantjoined');
  on('participantleft');
  on('connectionstate', ({ target, state: s }) => {
    document.body.dataset[`${target}State`] = s;
    if (s === 'failed') status(`${target} connection failed`, true);
  });
  on('servererror', (err) => status(`server: ${err.code}: ${err.message}`, true));
  on('reconnecting', () => {
    setState('reconnecting');
    status('connection lost; reconnecting…');
  });
  on('resumed', () => {
    setState('joined');
    status('reconnected');
  });
  let migrating = false;
  on('leave', ({ reason }) => {
    if (reason !== 'migrate') {
      status(`the server closed the session: ${reason}`, reason !== 'client_left');
      return;
    }
    migrating = true;
    status('the server is moving this call; reconnecting…');
    // The server closes the connection next; close it ourselves if it does not.
    setTimeout(() => { if (!client.closed) client.leave(0); }, 2000);
  });
  on('closed', ({ reason }) => {
    const mutedKinds = state.localTracks.filter((t) => t.muted).map((t) => t.kind);
    finish();
    if (migrating) rejoin(mutedKinds).catch((err) => status(err.message, true));
    else if (reason === 'resume_failed') rejoin(mutedKinds, 'the connection was lost').catch((err) => status(err.message, true));
    else if (reason !== 'client_left') status(`disconnected: ${reason}`, true);
  });
}

// The server moved the call (its node drains), or the session could not be
// resumed: join the same room again, with the same identity (after a migrate
// it lands on another node). join() publishes the camera and microphone again;
// what was muted is muted again.
async function rejoin(mutedKinds, why = 'the server is moving this call') {
  const { room, name, simulcast, identity } = state.joinArgs;
  let lastError = null;
  for (let attempt = 1; attempt <= REJOIN_ATTEMPTS; attempt++) {
    setState('reconnecting');
    $('#join').disabled = true;
    status(`${why}; reconnecting…${attempt > 1 ? ` (attempt ${attempt} of ${REJOIN_ATTEMPTS})` : ''}`);
    // 0.5–1 s, doubling: jittered, because the whole room is told to move at once.
    await new Promise((resolve) => setTimeout(resolve, (500 + Math.random() * 500) * 2 ** (attempt - 1)));
    if (state.client) return; // joined meanwhile
    try {
      await join(room, name, { simulcast, identity });
    } catch (err) {
      lastError = err;
      continue;
    }
    const buttons = { audio: $('#mute-mic'), video: $('#mute-cam') };
    for (const kind of mutedKinds) await toggleMute(kind, buttons[kind]).catch(() => {});
    return;
  }
  setState('error');
  status(`could not reconnect after ${REJOIN_ATTEMPTS} attempts: ${lastError ? lastError.message : 'unknown error'}`, true);
  $('#join').disabled = false;
}

function finish() {
  clearInterval(state.statsTimer);
  state.statsTimer = null;
  if (state.localStream) for (const t of state.localStream.getTracks()) t.stop();
  state.localStream = null;
  for (const trackId of [...state.tiles.keys()]) removeRemoteTrack({ trackId });
  for (const trackId of [...state.audioSinks.keys()]) removeRemoteTrack({ trackId });
  if (state.localTile) state.localTile.el.remove();
  state.localTile = null;
  state.localTracks = [];
  state.client = null;
  $('#join-form').hidden = false;
  $('#controls').hidden = true;
  $('#join').disabled = false;
  setState('left');
}

async function leave() {
  if (!state.client) return;
  await state.client.leave();
  status('left the room');
}

async function toggleMute(kind, button) {
  const local = state.localTracks.find((t) => t.kind === kind);
  if (!local || !state.client) return;
  const muted = !local.muted;
  await state.client.mute(local.trackId, muted);
  button.setAttribute('aria-pressed', String(muted));
  button.textContent = kind === 'audio' ? (muted ? 'Unmute mic' : 'Mute mic') : (muted ? 'Start camera' : 'Stop camera');
  if (state.localTile && kind === 'video') state.localTile.el.classList.toggle('muted', muted);
}

// --- page wiring ----------------------------------------------------------------------

$('#room').value = params.get('room') || $('#room').value;
$('#name').value = params.get('name') || `guest-${randomSuffix().slice(0, 4)}`;
if (params.get('simulcast') === '0') $('#simulcast').checked = false;

$('#join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join($('#room').value.trim(), $('#name').value.trim(), { simulcast: $('#simulcast').checked }).catch(() => {});
});
$('#leave').addEventListener('click', () => leave().catch((err) => status(err.message, true)));
$('#mute-mic').addEventListener('click', (ev) => toggleMute('audio', ev.currentTarget).catch((err) => status(err.message, true)));
$('#mute-cam').addEventListener('click', (ev) => toggleMute('video', ev.currentTarget).catch((err) => status(err.message, true)));
window.addEventListener('pagehide', () => { if (state.client) state.client.leave(0); });

// --- test / automation surface ----------------------------------------------------------

window.sfuDemo = {
  get client() { return state.client; },
  get state() { return document.body.dataset.state; },
  get error() { return state.error; },
  get events() { return state.events.slice(); },
  join: (room, name, options) => join(room, name, options),
  leave: () => leave(),
  setQuality: (trackId, mode) => applyQuality(trackId, mode),
  // Remote tracks: [{trackId, participantId, identity, kind, mode, layer}]
  tracks() {
    if (!state.client) return [];
    return [...state.client.remoteTracks.values()].map((rt) => ({
      trackId: rt.trackId,
      participantId: rt.participantId,
      identity: rt.participant ? rt.participant.identity : null,
      kind: rt.kind,
      mode: state.tiles.get(rt.trackId)?.mode ?? null,
      layer: rt.layer,
    }));
  },
  // Remote video tracks, from the subscriber connection's inbound-rtp stats:
  // {trackId: {framesDecoded, frameWidth, frameHeight, layer, participantId, ...}}
  async stats() {
    if (!state.client) return {};
    const all = await state.client.remoteTrackStats();
    return Object.fromEntries(Object.entries(all).filter(([, s]) => s.kind === 'video'));
  },
  // Published tracks: {trackId: {kind, muted, encodings: [{rid, frameWidth, bytesSent, ...}]}}
  async localStats() {
    return state.client ? state.client.localTrackStats() : {};
  },
  async connectionStats() {
    return state.client ? state.client.connectionStats() : null;
  },
};

if (params.get('autojoin') === '1') {
  join($('#room').value.trim(), $('#name').value.trim(), { simulcast: $('#simulcast').checked }).catch(() => {});
}
