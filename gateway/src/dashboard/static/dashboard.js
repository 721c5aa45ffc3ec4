// The dashboard page: one WebSocket to the gateway (docs/dashboard.md,
// "Messages"). Everything the gateway sends is shown through textContent,
// never parsed as HTML (model names come from the model).
/* global document, location, WebSocket, ImageData, URLSearchParams, setTimeout */
'use strict';

const FRAME_MAGIC = 0x31424650;
const FRAME_FORMAT_RGB888 = 1;
const FRAME_HEADER_BYTES = 16;
/** Trace rows kept on the page; older ones go. */
const MAX_ROWS = 1000;

const token = new URLSearchParams(location.search).get('token') ?? '';
const $ = (id) => document.getElementById(id);
const canvas = $('screen');
const ctx = canvas.getContext('2d');
const rows = $('trace').tBodies[0];

let ws = null;
let kinds = [];
const shown = new Set();
let paused = false;
let notShown = 0;

function setState(el, text, cls) {
  el.textContent = text;
  el.className = `state ${cls}`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function send(m) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
}

function connect() {
  setState($('conn'), 'connecting', '');
  const s = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
  s.binaryType = 'arraybuffer';
  ws = s;
  s.onopen = () => {
    setState($('conn'), 'live', 'live');
    // A page that reconnects keeps its filter and pause.
    if (kinds.length > 0) send({ type: 'filter', kinds: kinds.filter((k) => shown.has(k)) });
    if (paused) send({ type: 'pause', paused: true });
  };
  s.onmessage = (e) => {
    if (typeof e.data === 'string') onMessage(JSON.parse(e.data));
    else onFrame(e.data);
  };
  s.onclose = () => {
    ws = null;
    setState($('conn'), 'disconnected: retrying', 'down');
    setTimeout(connect, 2000);
  };
}

function onMessage(m) {
  if (m.type === 'hello') onHello(m);
  else if (m.type === 'trace') onTrace(m);
  else if (m.type === 'stats') onStats(m);
}

function onHello(m) {
  if (kinds.length > 0) return;
  kinds = m.kinds;
  const box = $('filters');
  for (const k of kinds) {
    shown.add(k);
    const label = el('label');
    const cb = el('input');
    cb.type = 'checkbox';
    cb.checked = true;
    cb.id = `kind-${k}`;
    cb.addEventListener('change', () => {
      if (cb.checked) shown.add(k);
      else shown.delete(k);
      for (const r of rows.rows) r.hidden = !shown.has(r.dataset.kind);
      send({ type: 'filter', kinds: kinds.filter((x) => shown.has(x)) });
    });
    label.append(cb, ` ${k}`);
    box.append(label);
  }
}

function onFrame(buf) {
  const v = new DataView(buf);
  if (buf.byteLength < FRAME_HEADER_BYTES || v.getUint32(0, true) !== FRAME_MAGIC || v.getUint16(4, true) !== FRAME_FORMAT_RGB888) return;
  const w = v.getUint16(8, true);
  const h = v.getUint16(10, true);
  if (buf.byteLength !== FRAME_HEADER_BYTES + w * h * 3) return;
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const rgb = new Uint8Array(buf, FRAME_HEADER_BYTES);
  const img = new ImageData(w, h);
  const px = img.data;
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    px[j] = rgb[i];
    px[j + 1] = rgb[i + 1];
    px[j + 2] = rgb[i + 2];
    px[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.frame = String(v.getUint32(12, true));
}

function onTrace(m) {
  // Paused: what is still in flight from before the pause is not shown either.
  if (paused) return;
  notShown += m.dropped;
  $('dropped').textContent = `${notShown} events not shown`;
  const add = document.createDocumentFragment();
  for (let i = m.events.length - 1; i >= 0; i--) {
    const e = m.events[i];
    const more = e.addr !== undefined ? `addr ${e.addr} len ${e.len}`
      : e.irq !== undefined ? `${e.irq} vector ${e.vector}`
        : e.level !== undefined ? `level ${e.level}`
          : e.reset !== undefined ? `reset ${e.reset}` : '';
    const r = el('tr', undefined, e.kind);
    r.dataset.kind = e.kind;
    r.append(el('td', e.seq), el('td', (e.t / 1000).toFixed(3)), el('td', e.session), el('td', e.kind, 'kind'),
      el('td', e.bar ?? ''), el('td', e.offset ?? ''), el('td', e.size ?? ''), el('td', e.value ?? ''), el('td', more, 'kind'));
    r.hidden = !shown.has(e.kind);
    add.append(r);
  }
  rows.prepend(add);
  while (rows.rows.length > MAX_ROWS) rows.deleteRow(-1);
}

function onStats(m) {
  const q = m.qemu;
  if (q.state === 'up') setState($('qemu'), `QEMU ${q.version}: ${q.status}`, q.running ? 'up' : 'down');
  else if (q.state === 'none') setState($('qemu'), 'no QEMU', 'down');
  else setState($('qemu'), `QEMU: ${q.error}`, 'down');
  const d = m.display;
  $('display').textContent = d.state === 'up' ? `${d.width}x${d.height}, frame ${d.frames}` : d.state === 'none' ? 'no QEMU' : `no screendump: ${d.error}`;
  $('trace-totals').textContent = `${m.trace.traced} events traced, ${m.trace.dropped} over the display's cap`;
  const box = $('sessions');
  box.replaceChildren();
  if (m.sessions.length === 0) box.append(el('p', 'no model connected', 'note'));
  for (const s of m.sessions) {
    const div = el('div', undefined, 'session');
    div.append(el('h3', `session ${s.id}: ${s.device || '(no device yet)'} from ${s.model || '?'}, ${s.state}`));
    const t = el('table');
    const head = el('tr');
    head.append(el('th', 'counter', 'kind'), el('th', 'total'), el('th', 'per second'));
    t.append(head);
    for (const [k, v] of Object.entries(s.counters)) {
      const r = el('tr');
      r.dataset.counter = k;
      r.append(el('td', k, 'kind'), el('td', v), el('td', s.rates[k] ?? '-'));
      t.append(r);
    }
    div.append(t);
    box.append(div);
  }
}

$('pause').addEventListener('click', () => {
  paused = !paused;
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  $('pause').setAttribute('aria-pressed', String(paused));
  send({ type: 'pause', paused });
});

$('clear').addEventListener('click', () => {
  rows.replaceChildren();
  notShown = 0;
  $('dropped').textContent = '0 events not shown';
});

connect();
