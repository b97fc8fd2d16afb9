// sfu-client.js: a browser client for the pysfu signaling protocol v1
// (docs/protocol.md). An ES module with no dependencies and no build step:
//
//   import { SfuClient } from '/static/sfu-client.js';
//   const client = new SfuClient();
//   client.addEventListener('track', (e) => { video.srcObject = e.detail.stream; });
//   await client.connect('ws://127.0.0.1:8080/v1/rtc', token);
//   const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   await client.publish(stream, { simulcast: true });
//
// Two RTCPeerConnections, as the protocol defines: `publisher` (the client
// offers, sendonly) and `subscriber` (the server offers, the client answers).
// ICE candidates trickle both ways.
//
// Resuming (section 13 of the protocol): when the WebSocket drops without a
// `leave` (network change, proxy timeout), the peer connections are kept and
// the client reconnects with the `resume_token` of the last `joined`, with
// backoff (0.25, 0.5, 1, 2, 4, 4... s) for up to 18 s (the server keeps the
// session for 20 s). Media keeps flowing meanwhile; requests made meanwhile
// (set_quality, mute, candidates...) are sent once the session is back.
//
// Events (all CustomEvent; the payload is in `event.detail`):
//   joined               {participant, room, participants}
//   participantjoined    {participant}
//   participantleft      {participant}
//   trackpublished       {participantId, track}        (track info, not media)
//   trackunpublished     {participantId, trackId}
//   track                RemoteTrack: a subscribed track's media is ready
//   trackremoved         RemoteTrack
//   trackupdated         RemoteTrack (its participant or info became known)
//   trackmuted           {participantId, trackId, muted}
//   layerchanged         {trackId, quality}
//   connectionstate      {target: 'publisher'|'subscriber', state}
//   pong                 {rtt}
//   servererror          SfuError (an `error` frame; the connection stays open unless fatal)
//   leave                {reason} (the server is about to close)
//   reconnecting         {since} the WebSocket dropped without a `leave`: resuming
//                        the session (the peer connections stay up meanwhile)
//   resumed              {participant, room, attempts, downtimeMs}: the session
//                        continues (same participant id); what was missed follows
//   closed               {reason} (the client is done: both connections are closed).
//                        Reasons: a server `leave` reason, 'client_left' (leave()),
//                        'connection_lost' (no `joined` within 18 s of a drop),
//                        'resume_failed' (the server no longer had the session:
//                        join again, as a new participant, and publish again)
//
// RemoteTrack = {trackId, participantId, participant, kind, info, mid, track,
//                stream, receiver, transceiver, layer, muted}

export const DEFAULT_LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', quality: 'low', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', quality: 'medium', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', quality: 'high', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

export const QUALITIES = Object.freeze(['low', 'medium', 'high', 'off']);

export class SfuError extends Error {
  constructor(code, message, requestType = null) {
    super(message);
    this.name = 'SfuError';
    this.code = code;
    this.requestType = requestType;
  }
}

const UINT16_MAX = 65535;

// Resuming after a dropped WebSocket: the server keeps a session for 20 s.
const RESUME_DEADLINE_MS = 18_000; // give up this long after the drop
const RECONNECT_FIRST_DELAY_MS = 250; // then doubling...
const RECONNECT_MAX_DELAY_MS = 4_000; // ...up to this
const RECONNECT_ATTEMPT_MS = 5_000; // one attempt: from opening the socket to `joined`
// Sent once the session is back if asked for while reconnecting. Not ping, not
// leave, and not subscriber_answer: the server sends an unanswered
// subscriber_offer again after a resume, and that is answered then.
const QUEUED_WHILE_RECONNECTING = new Set([
  'candidate', 'publish', 'unpublish', 'mute', 'set_quality', 'set_video_size', 'subscribe', 'unsubscribe',
]);
const MAX_QUEUED_WHILE_RECONNECTING = 256;

function clampUint16(value) {
  const n = Math.round(Number(value) || 0);
  return Math.min(UINT16_MAX, Math.max(0, n));
}

function rtcUrl(url, token, autoSubscribe) {
  const u = new URL(url, typeof location !== 'undefined' ? location.href : undefined);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (!u.pathname.endsWith('/v1/rtc')) u.pathname = u.pathname.replace(/\/?$/, '/v1/rtc');
  u.searchParams.set('access_token', token);
  u.searchParams.set('auto_subscribe', autoSubscribe ? '1' : '0');
  return u;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new SfuError('timeout', `${what}: no reply in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function pick(stat, names) {
  const out = {};
  for (const name of names) out[name] = stat[name] ?? null;
  return out;
}

const INBOUND_FIELDS = [
  'kind', 'ssrc', 'mid', 'packetsReceived', 'packetsLost', 'bytesReceived', 'jitter', 'nackCount',
  'firCount', 'pliCount', 'framesDecoded', 'keyFramesDecoded', 'framesDropped', 'frameWidth',
  'frameHeight', 'framesPerSecond', 'freezeCount', 'totalFreezesDuration', 'decoderImplementation',
  'timestamp',
];
const OUTBOUND_FIELDS = [
  'kind', 'ssrc', 'mid', 'rid', 'active', 'packetsSent', 'bytesSent', 'retransmittedBytesSent',
  'framesEncoded', 'framesSent', 'frameWidth', 'frameHeight', 'framesPerSecond', 'targetBitrate',
  'qualityLimitationReason', 'nackCount', 'pliCount', 'firCount', 'encoderImplementation',
  'scalabilityMode', 'timestamp',
];

export class SfuClient extends EventTarget {
  // options.iceServers: RTCIceServer[] for both connections. Left out, the
  //   client uses the `ice_servers` of the `joined` frame, which is [] unless
  //   the server was started with --stun. Pass [] to never use any.
  // options.autoSubscribe (default true), options.pingIntervalMs (10000),
  // options.requestTimeoutMs (15000).
  constructor(options = {}) {
    super();
    this.options = {
      iceServers: undefined,
      autoSubscribe: true,
      pingIntervalMs: 10_000,
      requestTimeoutMs: 15_000,
      ...options,
    };
    this.ws = null;
    this.publisher = null;
    this.subscriber = null;
    this.self = null; // {id, identity, name}
    this.room = null; // {name, node_id}
    this.iceServers = [];
    this.participants = new Map(); // id -> {id, identity, name, tracks: Map(trackId -> info)}
    this.remoteTracks = new Map(); // trackId -> RemoteTrack
    this.localTracks = new Map(); // trackId -> {trackId, mid, kind, source, name, track, sender, transceiver, layers, muted}
    this.layers = new Map(); // trackId -> quality last reported by layer_changed
    this.rtt = null;
    this.closed = false;
    this.leaveReason = null;

    this._chain = Promise.resolve(); // incoming frames are handled one at a time, in order
    this._joinWaiter = null;
    this._publishWaiter = null;
    this._publishLock = Promise.resolve();
    this._pubEntries = []; // every m-section this client publishes: {transceiver, kind, source, name, layers, track}
    this._pubSignaled = false; // the first publish frame went out: publisher candidates may follow
    this._pubLocalQueue = [];
    this._pubRemoteQueue = [];
    this._subAnswered = false;
    this._subLocalQueue = [];
    this._subRemoteQueue = [];
    this._subMids = {}; // mid -> trackId of the latest subscriber_offer
    this._ended = new Set(); // trackIds known to be unpublished
    this._pingTimer = null;
    this._leaveWaiter = null;
    this._resumeToken = null; // of the last `joined`: good for one resume
    this._reconnect = null; // while resuming: {since, deadline, delay, attempts, timer, attemptTimer}
    this._queuedWhileReconnecting = [];
    this._offlineUntil = 0; // _dropSignalingForTest(): no reconnect attempt before this time
    this._leaving = false; // leave() was called: a closing socket is expected
    this._saidGoodbye = new WeakSet(); // sockets a `leave` was sent on
    this._lastSubOffer = null; // SDP of the last subscriber_offer answered, and the answer sent
    this._lastSubAnswer = null;
    this._lastSubAnswerWs = null; // the socket that answer went out on (null: it did not)
  }

  // --- connection ----------------------------------------------------------------------

  // Opens the WebSocket and resolves with the `joined` frame. `url` is the
  // server's ws(s):// or http(s):// address, with or without /v1/rtc.
  connect(url, token) {
    if (this._url) throw new Error('connect() was already called; use a new SfuClient to reconnect');
    const target = rtcUrl(url, token, this.options.autoSubscribe);
    this._url = target;
    return new Promise((resolve, reject) => {
      this._joinWaiter = { resolve, reject };
      this._openSocket(target);
    });
  }

  // this.ws is always the newest socket; events of an older one are ignored.
  _openSocket(url) {
    const ws = new WebSocket(url.href);
    this.ws = ws;
    ws.onmessage = (ev) => { if (ws === this.ws) this._onFrame(ev.data); };
    ws.onclose = (ev) => { if (ws === this.ws) this._onSocketClose(ev); };
    ws.onerror = () => {}; // onclose follows and says what we know
    return ws;
  }

  _send(message) {
    const open = this.ws && this.ws.readyState === WebSocket.OPEN;
    // Reconnecting, or the socket is closing and onclose will start resuming.
    if (this._reconnect || (!open && this._resumeToken && !this.closed && !this._leaving && !this.leaveReason)) {
      // The socket is gone or not joined yet: keep what the resumed session needs.
      if (!QUEUED_WHILE_RECONNECTING.has(message.type)) return false;
      if (this._queuedWhileReconnecting.length >= MAX_QUEUED_WHILE_RECONNECTING) return false;
      this._queuedWhileReconnecting.push(message);
      return true;
    }
    if (!open) return false;
    this.ws.send(JSON.stringify(message));
    if (message.type === 'leave') this._saidGoodbye.add(this.ws);
    return true;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _onFrame(data) {
    if (this.closed) return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message.type !== 'string') return;
    this._chain = this._chain
      .then(() => this._handle(message))
      .catch((err) => this._emit('servererror', err instanceof SfuError ? err
        : new SfuError('client', `handling ${message.type}: ${err && err.message ? err.message : err}`, message.type)));
  }

  async _onSocketClose(ev) {
    if (this._joinWaiter) {
      // Browsers hide the body of a refused handshake: ask again with fetch() to
      // show the server's reason (section 1 of the protocol).
      const reason = await this._handshakeFailure(ev);
      if (this._joinWaiter) this._joinWaiter.reject(reason);
      this._joinWaiter = null;
      this._teardown(this.leaveReason || 'connection_lost');
      return;
    }
    if (this.closed) return;
    if (this.leaveReason || this._leaving || !this._resumeToken) {
      this._teardown(this.leaveReason || (this._leaving ? 'client_left' : 'connection_lost'));
      return;
    }
    // Dropped without a goodbye (or a reconnect attempt failed): the server
    // keeps the session for a while; keep the peer connections and resume.
    this._scheduleReconnect();
  }

  // --- resuming ----------------------------------------------------------------------------

  _scheduleReconnect() {
    const now = Date.now();
    if (!this._reconnect) {
      this._stopPing();
      this._reconnect = {
        since: now,
        deadline: now + RESUME_DEADLINE_MS,
        delay: RECONNECT_FIRST_DELAY_MS,
        attempts: 0,
        timer: null,
        attemptTimer: null,
      };
      this._emit('reconnecting', { since: now });
      if (this.closed) return; // a listener gave up (leave())
    }
    const r = this._reconnect;
    clearTimeout(r.timer);
    clearTimeout(r.attemptTimer);
    const remaining = r.deadline - now;
    if (remaining <= 0) {
      this._teardown('connection_lost');
      return;
    }
    const delay = Math.min(Math.max(r.delay, this._offlineUntil - now), remaining);
    r.delay = Math.min(r.delay * 2, RECONNECT_MAX_DELAY_MS);
    r.timer = setTimeout(() => this._reconnectAttempt(r), delay);
  }

  _reconnectAttempt(r) {
    if (this.closed || this._reconnect !== r) return;
    r.timer = null;
    r.attempts += 1;
    const url = new URL(this._url.href);
    url.searchParams.set('resume', this._resumeToken);
    const ws = this._openSocket(url);
    // The server answered: its `joined` is on the way (handled in order, in _chain).
    ws.addEventListener('message', () => clearTimeout(r.attemptTimer), { once: true });
    // An attempt that hangs (no TCP answer, no `joined`) makes way for the next.
    const budget = Math.min(RECONNECT_ATTEMPT_MS, Math.max(r.deadline - Date.now(), 1000));
    r.attemptTimer = setTimeout(() => {
      if (this.closed || this._reconnect !== r || this.ws !== ws) return;
      this.ws = null; // its events are ignored from now on
      this._closeSocket(ws);
      this._scheduleReconnect();
    }, budget);
  }

  // Closes a socket this client gives up; if it is open the server may have
  // attached a participant to it: say goodbye first, so nobody waits for it.
  _closeSocket(ws) {
    if (!ws || ws.readyState > WebSocket.OPEN) return;
    if (ws.readyState === WebSocket.OPEN && !this._saidGoodbye.has(ws) && !this.leaveReason) {
      ws.send(JSON.stringify({ type: 'leave' }));
      this._saidGoodbye.add(ws);
    }
    ws.close(1000);
  }

  // The `joined` of a reconnect attempt.
  _onRejoined(msg) {
    const r = this._reconnect;
    clearTimeout(r.timer);
    clearTimeout(r.attemptTimer);
    this._reconnect = null;
    const queued = this._queuedWhileReconnecting.splice(0);
    if (!msg.resumed || !msg.participant || msg.participant.id !== this.self.id) {
      // Too late (or another node): the server joined this connection afresh,
      // as a new participant with no media. Our peer connections belong to the
      // old one, which is gone, so this client is done: _teardown says `leave`
      // on the new connection first (the others see the newcomer leave at once
      // rather than a silent participant), and the application joins again.
      this._teardown('resume_failed');
      return;
    }
    this.room = msg.room || this.room;
    this._syncParticipants(msg.participants || []);
    this._startPing();
    for (const frame of queued) this._send(frame);
    this._emit('resumed', {
      participant: this.self,
      room: this.room,
      attempts: r.attempts,
      downtimeMs: Date.now() - r.since,
    });
  }

  // Test hook: loses the signaling connection without a `leave`, as a network
  // change would. A browser cannot abort the TCP connection, so this sends a
  // close frame; the server treats any close not preceded by `leave` as a drop.
  // `offlineMs`: the first reconnect attempt waits at least this long.
  _dropSignalingForTest(offlineMs = 0) {
    this._offlineUntil = Date.now() + offlineMs;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(4000, 'simulated network drop');
  }

  async _handshakeFailure(ev) {
    if (this.leaveReason) return new SfuError(this.leaveReason, `the server closed the connection: ${this.leaveReason}`);
    try {
      const u = new URL(this._url.href);
      u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
      const response = await fetch(u.href, { cache: 'no-store' });
      const body = await response.json();
      if (body && body.error && response.status === 401) {
        return new SfuError(body.error.code, body.error.message);
      }
    } catch {
      // fall through
    }
    return new SfuError('connection_failed', `WebSocket closed before joining (code ${ev.code})`);
  }

  _startPing() {
    this._stopPing();
    this._pingTimer = setInterval(() => this._send({ type: 'ping', ts: Date.now() }), this.options.pingIntervalMs);
  }

  _stopPing() {
    if (this._pingTimer !== null) clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _newPeerConnection(target) {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    });
    pc.onicecandidate = (ev) => this._onLocalCandidate(target, ev.candidate);
    pc.onconnectionstatechange = () => this._emit('connectionstate', { target, state: pc.connectionState });
    return pc;
  }

  _onLocalCandidate(target, candidate) {
    const value = candidate ? candidate.toJSON() : null;
    if (value && !value.candidate) return; // Chromium's "" end marker; null follows
    const frame = { type: 'candidate', target, candidate: value };
    if (target === 'publisher') {
      if (this._pubSignaled) this._send(frame); else this._pubLocalQueue.push(frame);
    } else if (this._subAnswered) {
      this._send(frame);
    } else {
      this._subLocalQueue.push(frame);
    }
  }

  async _onRemoteCandidate(target, candidate) {
    const pc = target === 'publisher' ? this.publisher : this.subscriber;
    if (!candidate || !candidate.candidate) return; // end of candidates: nothing to do
    const init = {
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? null,
      sdpMLineIndex: candidate.sdpMLineIndex ?? null,
    };
    if (init.sdpMid === null && init.sdpMLineIndex === null) init.sdpMLineIndex = 0;
    if (!pc || !pc.remoteDescription) {
      (target === 'publisher' ? this._pubRemoteQueue : this._subRemoteQueue).push(init);
      return;
    }
    await pc.addIceCandidate(init);
  }

  async _flushRemote(target) {
    const queue = target === 'publisher' ? this._pubRemoteQueue : this._subRemoteQueue;
    const pc = target === 'publisher' ? this.publisher : this.subscriber;
    while (queue.length) {
      const init = queue.shift();
      try {
        await pc.addIceCandidate(init);
      } catch (err) {
        this._emit('servererror', new SfuError('client', `addIceCandidate: ${err.message}`, 'candidate'));
      }
    }
  }

  // --- incoming frames -------------------------------------------------------------------

  async _handle(msg) {
    if (this.closed) return undefined; // e.g. what followed a `joined` that ended the client
    switch (msg.type) {
      case 'joined': return this._onJoined(msg);
      case 'publish_answer': return this._onPublishAnswer(msg);
      case 'subscriber_offer': return this._onSubscriberOffer(msg);
      case 'candidate': return this._onRemoteCandidate(msg.target, msg.candidate);
      case 'participant_joined': {
        const known = this.participants.get(msg.participant.id);
        if (known) {
          // Already learnt from a resumed `joined` (its replay follows it).
          Object.assign(known, { identity: msg.participant.identity, name: msg.participant.name });
          return undefined;
        }
        const p = this._addParticipant(msg.participant);
        this._emit('participantjoined', { participant: p });
        return undefined;
      }
      case 'participant_left': return this._onParticipantLeft(msg.participant_id);
      case 'track_published': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.tracks.set(msg.track.id, msg.track);
        this._ended.delete(msg.track.id);
        const rt = this.remoteTracks.get(msg.track.id);
        if (rt && !rt.info) {
          Object.assign(rt, { info: msg.track, participantId: msg.participant_id, participant: p || null });
          this._emit('trackupdated', rt);
        }
        this._emit('trackpublished', { participantId: msg.participant_id, track: msg.track });
        return undefined;
      }
      case 'track_unpublished': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.tracks.delete(msg.track_id);
        this._ended.add(msg.track_id);
        this._dropRemote(msg.track_id);
        this._emit('trackunpublished', { participantId: msg.participant_id, trackId: msg.track_id });
        return undefined;
      }
      case 'track_muted': {
        const p = this.participants.get(msg.participant_id);
        const info = p && p.tracks.get(msg.track_id);
        if (info) info.muted = msg.muted;
        const rt = this.remoteTracks.get(msg.track_id);
        if (rt) rt.muted = msg.muted;
        this._emit('trackmuted', { participantId: msg.participant_id, trackId: msg.track_id, muted: msg.muted });
        return undefined;
      }
      case 'layer_changed': {
        this.layers.set(msg.track_id, msg.quality);
        const rt = this.remoteTracks.get(msg.track_id);
        if (rt) rt.layer = msg.quality;
        this._emit('layerchanged', { trackId: msg.track_id, quality: msg.quality });
        return undefined;
      }
      case 'pong':
        if (typeof msg.ts === 'number') this.rtt = Date.now() - msg.ts;
        this._emit('pong', { rtt: this.rtt });
        return undefined;
      case 'leave':
        this.leaveReason = msg.reason || 'unknown';
        this._emit('leave', { reason: this.leaveReason });
        if (this._leaveWaiter) this._leaveWaiter();
        return undefined;
      case 'error': {
        const err = new SfuError(msg.code, msg.message, msg.request_type ?? null);
        if (this._joinWaiter && !this.self) {
          this._joinWaiter.reject(err);
          this._joinWaiter = null;
        }
        if (this._publishWaiter && msg.request_type === 'publish') {
          this._publishWaiter.reject(err);
          this._publishWaiter = null;
        }
        this._emit('servererror', err);
        return undefined;
      }
      default:
        return undefined; // newer servers may send more; ignore what we do not know
    }
  }

  _addParticipant(raw) {
    const p = { id: raw.id, identity: raw.identity, name: raw.name, tracks: new Map() };
    for (const t of raw.tracks || []) p.tracks.set(t.id, t);
    this.participants.set(p.id, p);
    return p;
  }

  _onJoined(msg) {
    this._resumeToken = msg.resume_token || null;
    if (this._reconnect && this.self) return this._onRejoined(msg);
    this.self = msg.participant;
    this.room = msg.room;
    this.iceServers = this.options.iceServers ?? (msg.ice_servers || []);
    for (const raw of msg.participants || []) this._addParticipant(raw);
    this.subscriber = this._newPeerConnection('subscriber');
    this._startPing();
    const detail = { participant: this.self, room: this.room, participants: [...this.participants.values()] };
    this._emit('joined', detail);
    if (this._joinWaiter) {
      this._joinWaiter.resolve(msg);
      this._joinWaiter = null;
    }
  }

  _onParticipantLeft(pid) {
    const p = this.participants.get(pid);
    this.participants.delete(pid);
    for (const rt of [...this.remoteTracks.values()]) {
      if (rt.participantId === pid) {
        this._ended.add(rt.trackId);
        this._dropRemote(rt.trackId);
      }
    }
    // Unknown: never announced, or already gone in a resumed `joined`.
    if (p) this._emit('participantleft', { participant: p });
  }

  // After a resume: the server holds and replays only what it sent after it
  // noticed the drop; what it wrote to the dying socket before that is lost.
  // The resumed `joined` lists the room as it is now: catch up with it (the
  // replay that follows then finds what it announces already known).
  _syncParticipants(list) {
    const listed = new Map(list.map((raw) => [raw.id, raw]));
    for (const pid of [...this.participants.keys()]) if (!listed.has(pid)) this._onParticipantLeft(pid);
    for (const raw of list) {
      let p = this.participants.get(raw.id);
      if (!p) {
        p = this._addParticipant(raw);
        this._emit('participantjoined', { participant: p });
      } else {
        Object.assign(p, { identity: raw.identity, name: raw.name });
        p.tracks = new Map((raw.tracks || []).map((t) => [t.id, t]));
      }
    }
    for (const rt of this.remoteTracks.values()) {
      const { participant, info } = this._findOwner(rt.trackId);
      if (!info) continue;
      if (!rt.info) {
        Object.assign(rt, { info, participantId: participant.id, participant });
        this._emit('trackupdated', rt);
      } else {
        rt.info = info;
      }
      if (!!info.muted !== rt.muted) {
        rt.muted = !!info.muted;
        this._emit('trackmuted', { participantId: participant.id, trackId: rt.trackId, muted: rt.muted });
      }
    }
  }

  async _onPublishAnswer(msg) {
    if (!this.publisher || !this._publishWaiter) return; // late answer to a publish we gave up on
    await this.publisher.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    await this._flushRemote('publisher');
    if (this._publishWaiter) {
      this._publishWaiter.resolve(msg);
      this._publishWaiter = null;
    }
  }

  async _onSubscriberOffer(msg) {
    const pc = this.subscriber;
    if (msg.sdp === this._lastSubOffer && pc.signalingState === 'stable') {
      // The offer we answered last, again: after a resume the server re-sends
      // the offer it still waits an answer for. Answered on an older socket,
      // the answer was lost with it: send the same answer again (it is applied
      // here already). Answered on this very socket, the server has the answer
      // (or will have it before anything else we send): a duplicate to ignore;
      // answering it again could be taken as the answer to a later offer.
      if (this._lastSubAnswerWs !== this.ws) {
        this._lastSubAnswerWs = this._send({ type: 'subscriber_answer', sdp: this._lastSubAnswer }) ? this.ws : null;
      }
      return;
    }
    this._subMids = { ...(msg.tracks || {}) };
    await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
    await this._flushRemote('subscriber');
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    const sdp = pc.localDescription.sdp;
    this._lastSubOffer = msg.sdp;
    this._lastSubAnswer = sdp;
    this._lastSubAnswerWs = this._send({ type: 'subscriber_answer', sdp }) ? this.ws : null;
    if (!this._subAnswered) {
      this._subAnswered = true;
      for (const frame of this._subLocalQueue.splice(0)) this._send(frame);
    }
    this._reconcileRemote();
  }

  _findOwner(trackId) {
    for (const p of this.participants.values()) {
      const info = p.tracks.get(trackId);
      if (info) return { participant: p, info };
    }
    return { participant: null, info: null };
  }

  // Makes remoteTracks match the m-sections of the latest subscriber offer.
  _reconcileRemote() {
    const want = new Map();
    for (const t of this.subscriber.getTransceivers()) {
      const trackId = t.mid !== null ? this._subMids[t.mid] : undefined;
      if (!trackId || this._ended.has(trackId)) continue;
      const dir = t.currentDirection;
      if (dir === 'recvonly' || dir === 'sendrecv') want.set(trackId, t);
    }
    for (const [trackId, rt] of [...this.remoteTracks]) {
      if (want.get(trackId) !== rt.transceiver) this._dropRemote(trackId);
    }
    for (const [trackId, t] of want) {
      if (this.remoteTracks.has(trackId)) continue;
      const { participant, info } = this._findOwner(trackId);
      const track = t.receiver.track;
      const rt = {
        trackId,
        participantId: participant ? participant.id : null,
        participant,
        kind: info ? info.kind : track.kind,
        info,
        mid: t.mid,
        track,
        stream: new MediaStream([track]),
        receiver: t.receiver,
        transceiver: t,
        layer: this.layers.get(trackId) ?? null,
        muted: info ? !!info.muted : false,
      };
      this.remoteTracks.set(trackId, rt);
      this._emit('track', rt);
    }
  }

  _dropRemote(trackId) {
    const rt = this.remoteTracks.get(trackId);
    if (!rt) return;
    this.remoteTracks.delete(trackId);
    this._emit('trackremoved', rt);
  }

  // --- publishing ------------------------------------------------------------------------

  // Publishes the audio and video tracks of `stream`. Video is sent as three
  // simulcast layers unless `simulcast: false`. Resolves with the published
  // tracks: [{trackId, mid, kind, ...}]. Calls are serialized.
  publish(stream, options = {}) {
    const run = this._publishLock.then(() => this._publish(stream, options));
    this._publishLock = run.catch(() => {});
    return run;
  }

  async _publish(stream, {
    simulcast = true,
    layers = DEFAULT_LAYERS,
    audioSource = 'microphone',
    videoSource = 'camera',
    audioName = '',
    videoName = '',
  } = {}) {
    if (!this.self) throw new Error('publish() before connect() resolved');
    if (!this.publisher) this.publisher = this._newPeerConnection('publisher');
    const pc = this.publisher;
    const added = [];
    for (const track of stream.getAudioTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      added.push({ transceiver, track, kind: 'audio', source: audioSource, name: audioName, layers: [] });
    }
    for (const track of stream.getVideoTracks()) {
      const init = { direction: 'sendonly', streams: [stream] };
      let layerInfo = [];
      if (simulcast && layers.length > 1) {
        init.sendEncodings = layers.map((l) => {
          const enc = { rid: l.rid, scaleResolutionDownBy: l.scaleResolutionDownBy ?? 1 };
          if (l.maxBitrate) enc.maxBitrate = l.maxBitrate;
          return enc;
        });
        const { width = 0, height = 0 } = track.getSettings();
        layerInfo = layers.map((l) => ({
          rid: l.rid,
          quality: l.quality,
          width: clampUint16(width / (l.scaleResolutionDownBy ?? 1)),
          height: clampUint16(height / (l.scaleResolutionDownBy ?? 1)),
        }));
      }
      const transceiver = pc.addTransceiver(track, init);
      added.push({ transceiver, track, kind: 'video', source: videoSource, name: videoName, layers: layerInfo });
    }
    this._pubEntries.push(...added);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const tracks = this._pubEntries
      .filter((e) => e.transceiver.mid !== null && !e.transceiver.stopped)
      .map((e) => {
        const t = { mid: e.transceiver.mid, source: e.source, name: e.name };
        if (e.layers.length) t.layers = e.layers;
        return t;
      });
    const answered = new Promise((resolve, reject) => { this._publishWaiter = { resolve, reject }; });
    if (!this._send({ type: 'publish', sdp: pc.localDescription.sdp, tracks })) {
      this._publishWaiter = null;
      throw new SfuError('closed', 'publish: the connection is closed', 'publish');
    }
    if (!this._pubSignaled) {
      this._pubSignaled = true;
      for (const frame of this._pubLocalQueue.splice(0)) this._send(frame);
    }
    let answer;
    try {
      answer = await withTimeout(answered, this.options.requestTimeoutMs, 'publish');
    } catch (err) {
      // Refused or unanswered: forget this offer so a later publish() starts clean.
      this._publishWaiter = null;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      for (const e of added) {
        try { e.transceiver.stop(); } catch { /* already stopped */ }
      }
      this._pubEntries = this._pubEntries.filter((e) => !added.includes(e));
      throw err;
    }
    const byMid = new Map((answer.tracks || []).map((t) => [t.mid, t.track_id]));
    const result = [];
    for (const e of added) {
      const trackId = byMid.get(e.transceiver.mid);
      if (!trackId) continue; // refused by the server (rejected m-section)
      const local = {
        trackId,
        mid: e.transceiver.mid,
        kind: e.kind,
        source: e.source,
        name: e.name,
        track: e.track,
        sender: e.transceiver.sender,
        transceiver: e.transceiver,
        layers: e.layers,
        muted: false,
      };
      this.localTracks.set(trackId, local);
      result.push(local);
    }
    return result;
  }

  // Mutes one of your published tracks: stops the media (replaceTrack(null))
  // and tells the others (track_muted). Unmuting puts the track back.
  async mute(trackId, muted) {
    const local = this.localTracks.get(trackId);
    if (!local) throw new Error(`mute: you publish no track ${trackId}`);
    muted = !!muted;
    local.muted = muted;
    local.track.enabled = !muted;
    await local.sender.replaceTrack(muted ? null : local.track);
    this._send({ type: 'mute', track_id: trackId, muted });
  }

  unpublish(trackId) {
    this._send({ type: 'unpublish', track_id: trackId });
  }

  // --- subscribing -----------------------------------------------------------------------

  // quality: 'low' | 'medium' | 'high' | 'off'
  setQuality(trackId, quality) {
    if (!QUALITIES.includes(quality)) throw new Error(`setQuality: unknown quality ${quality}`);
    this._send({ type: 'set_quality', track_id: trackId, quality });
  }

  // The size the video is rendered at, in device pixels; 0, 0 when hidden.
  setVideoSize(trackId, width, height) {
    this._send({ type: 'set_video_size', track_id: trackId, width: clampUint16(width), height: clampUint16(height) });
  }

  subscribe(trackIds) {
    this._send({ type: 'subscribe', track_ids: [...trackIds] });
  }

  unsubscribe(trackIds) {
    this._send({ type: 'unsubscribe', track_ids: [...trackIds] });
  }

  // --- leaving ---------------------------------------------------------------------------

  async leave(timeoutMs = 2000) {
    if (this.closed) return;
    this._leaving = true;
    if (this._send({ type: 'leave' })) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this._leaveWaiter = () => { clearTimeout(timer); resolve(); };
      });
    }
    this._teardown('client_left');
  }

  _teardown(reason) {
    if (this.closed) return;
    this.closed = true;
    this._stopPing();
    if (this._reconnect) {
      clearTimeout(this._reconnect.timer);
      clearTimeout(this._reconnect.attemptTimer);
      this._reconnect = null;
    }
    this._queuedWhileReconnecting = [];
    if (this._leaveWaiter) this._leaveWaiter();
    if (this._joinWaiter) {
      this._joinWaiter.reject(new SfuError('closed', `connection closed: ${reason}`));
      this._joinWaiter = null;
    }
    if (this._publishWaiter) {
      this._publishWaiter.reject(new SfuError('closed', `connection closed: ${reason}`, 'publish'));
      this._publishWaiter = null;
    }
    for (const pc of [this.publisher, this.subscriber]) if (pc) pc.close();
    this._closeSocket(this.ws);
    for (const trackId of [...this.remoteTracks.keys()]) this._dropRemote(trackId);
    this._emit('closed', { reason });
  }

  // --- statistics ------------------------------------------------------------------------

  // Raw RTCStatsReports of both connections.
  async getStats() {
    return {
      publisher: this.publisher ? await this.publisher.getStats() : null,
      subscriber: this.subscriber ? await this.subscriber.getStats() : null,
    };
  }

  // {trackId: {kind, framesDecoded, frameWidth, frameHeight, bytesReceived,
  //   packetsLost, packetsReceived, framesPerSecond, ..., layer, participantId}}
  // from the subscriber connection's inbound-rtp stats, one entry per track.
  async remoteTrackStats() {
    const out = {};
    const tracks = [...this.remoteTracks.values()];
    const reports = await Promise.all(tracks.map((rt) => rt.receiver.getStats().catch(() => null)));
    tracks.forEach((rt, i) => {
      let inbound = null;
      if (reports[i]) {
        reports[i].forEach((s) => {
          if (s.type === 'inbound-rtp' && (!inbound || (s.packetsReceived || 0) > (inbound.packetsReceived || 0))) inbound = s;
        });
      }
      out[rt.trackId] = {
        ...pick(inbound || {}, INBOUND_FIELDS),
        kind: rt.kind,
        participantId: rt.participantId,
        layer: rt.layer,
        muted: rt.muted,
      };
    });
    return out;
  }

  // {trackId: {kind, muted, encodings: [{rid, frameWidth, frameHeight, bytesSent, ...}]}}
  // from the publisher connection's outbound-rtp stats.
  async localTrackStats() {
    const out = {};
    const tracks = [...this.localTracks.values()];
    const reports = await Promise.all(tracks.map((lt) => lt.sender.getStats().catch(() => null)));
    tracks.forEach((lt, i) => {
      const encodings = [];
      if (reports[i]) {
        reports[i].forEach((s) => { if (s.type === 'outbound-rtp') encodings.push(pick(s, OUTBOUND_FIELDS)); });
      }
      encodings.sort((a, b) => (a.frameWidth || 0) - (b.frameWidth || 0));
      out[lt.trackId] = { kind: lt.kind, muted: lt.muted, encodings };
    });
    return out;
  }

  // The selected ICE candidate pair of each connection: round-trip time and the
  // bandwidth estimate.
  async connectionStats() {
    const one = async (pc) => {
      if (!pc) return null;
      const report = await pc.getStats();
      let pair = null;
      report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
      });
      if (!pair) return { state: pc.connectionState };
      return {
        state: pc.connectionState,
        currentRoundTripTime: pair.currentRoundTripTime ?? null,
        availableOutgoingBitrate: pair.availableOutgoingBitrate ?? null,
        availableIncomingBitrate: pair.availableIncomingBitrate ?? null,
        bytesSent: pair.bytesSent ?? null,
        bytesReceived: pair.bytesReceived ?? null,
      };
    };
    return { publisher: await one(this.publisher), subscriber: await one(this.subscriber), signalingRtt: this.rtt };
  }
}
