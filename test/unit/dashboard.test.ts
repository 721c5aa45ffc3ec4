// The dashboard (gateway/src/dashboard) without QEMU or a browser: the
// token and Host/Origin checks, the trace buffer's caps, the browser's
// messages, and the server itself over real HTTP and WebSocket connections
// with a GatewayServer whose sessions have no model behind them. The
// browser test against the real card is test/qemu/dashboard.test.ts.
import { expect } from 'chai';
import { request } from 'node:http';
import { connect } from 'node:net';
import { Duplex } from 'node:stream';
import { deflateSync, crc32 } from 'node:zlib';
import { WebSocket } from 'ws';
import { hostAllowed, newToken, checkToken, originAllowed, tokenMatches } from '../../gateway/src/dashboard/auth.js';
import { startDashboard, type Dashboard } from '../../gateway/src/dashboard/index.js';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, parseClientMessage } from '../../gateway/src/dashboard/messages.js';
import { select, TraceBuffer, wireEvent } from '../../gateway/src/dashboard/trace-buffer.js';
import { PciemError } from '../../gateway/src/errors.js';
import type { Qmp, ScreenPixels } from '../../gateway/src/qmp.js';
import { FakeBackend } from '../../gateway/src/relay/fake-host.js';
import { GatewayServer } from '../../gateway/src/relay/server.js';
import { ModelSession } from '../../gateway/src/relay/session.js';
import type { TraceKind } from '../../gateway/src/relay/trace.js';
import { decodePng } from '../lib/png.js';
import { until as waitUntil } from '../lib/until.js';

const T0 = 1_000_000n;

describe('dashboard: token, Host and Origin', function () {
  it('a new token is 128 random bits in hex', function () {
    const a = newToken();
    expect(a).to.match(/^[0-9a-f]{32}$/);
    expect(newToken()).to.not.equal(a);
  });

  it('the token matches only itself (missing, wrong, a prefix, longer: refused)', function () {
    const t = newToken();
    expect(tokenMatches(t, t)).to.equal(true);
    for (const bad of [null, undefined, '', t.slice(0, -1), `${t}0`, t.toUpperCase(), newToken()]) expect(tokenMatches(bad, t)).to.equal(false);
  });

  it('a token given by the caller must be long and URL-safe', function () {
    expect(checkToken('abcdefghijklmnop')).to.equal('abcdefghijklmnop');
    for (const bad of ['short', 'x'.repeat(257), 'abcdefghijklmnop<', 'abcdefgh ijklmnop', 'abcdefghijklmnop"']) {
      expect(() => checkToken(bad)).to.throw(PciemError).with.property('code', 'PCIEM_ERR_INVALID');
    }
  });

  it('Host: the bound address with its port, or a loopback name; never another name', function () {
    expect(hostAllowed('127.0.0.1:8080', '127.0.0.1', 8080)).to.equal(true);
    expect(hostAllowed('localhost:8080', '127.0.0.1', 8080)).to.equal(true);
    expect(hostAllowed('LOCALHOST:9000', '127.0.0.1', 8080)).to.equal(true); // a forwarded port
    expect(hostAllowed('[::1]:8080', '127.0.0.1', 8080)).to.equal(true);
    expect(hostAllowed('10.0.2.15:8080', '10.0.2.15', 8080)).to.equal(true);
    expect(hostAllowed('10.0.2.15:8081', '10.0.2.15', 8080)).to.equal(false);
    expect(hostAllowed('evil.example:8080', '127.0.0.1', 8080)).to.equal(false);
    expect(hostAllowed('localhost.evil.example:8080', '127.0.0.1', 8080)).to.equal(false);
    expect(hostAllowed(undefined, '127.0.0.1', 8080)).to.equal(false);
    expect(hostAllowed('127.0.0.1:80:80', '127.0.0.1', 8080)).to.equal(false);
  });

  it('Origin: absent (not a browser) or this dashboard over http', function () {
    expect(originAllowed(undefined, '127.0.0.1', 8080)).to.equal(true);
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1', 8080)).to.equal(true);
    expect(originAllowed('http://evil.example', '127.0.0.1', 8080)).to.equal(false);
    expect(originAllowed('null', '127.0.0.1', 8080)).to.equal(false);
    expect(originAllowed('file://', '127.0.0.1', 8080)).to.equal(false);
  });
});

describe('dashboard: trace buffer and messages', function () {
  const write = (value: number): { kind: 'mmio_write'; bar: number; offset: bigint; size: number; value: bigint } =>
    ({ kind: 'mmio_write', bar: 0, offset: 0x10n, size: 4, value: BigInt(value) });

  it('keeps at most perKind events of each kind per batch and counts the rest, per kind', function () {
    const b = new TraceBuffer(3);
    b.wanted = new Set<TraceKind>(['mmio_write', 'msi']);
    for (let i = 0; i < 10; i++) b.record(1, write(i), T0);
    b.record(1, { kind: 'msi', irq: 1, vector: 0 }, T0);
    b.record(1, { kind: 'dma_read', addr: 0x1000n, len: 64 }, T0); // not wanted: numbered, not kept
    const batch = b.take();
    expect(batch.records.get('mmio_write')?.map((r) => r.ev.kind === 'mmio_write' && r.ev.value)).to.deep.equal([0n, 1n, 2n]);
    expect(batch.dropped.get('mmio_write')).to.equal(7);
    expect(batch.records.get('msi')?.length).to.equal(1);
    expect(batch.records.has('dma_read')).to.equal(false);
    expect(b.traced).to.equal(12);
    expect(b.droppedTotal).to.equal(7);
    expect(b.take().records.size).to.equal(0);
  });

  it("a browser's share: its kinds in relay order, and how many of them were left out", function () {
    const b = new TraceBuffer(2);
    b.wanted = new Set<TraceKind>(['mmio_write', 'msi']);
    b.record(1, write(1), T0);
    b.record(2, { kind: 'msi', irq: 1, vector: 3 }, T0);
    b.record(1, write(2), T0);
    b.record(1, write(3), T0);
    const batch = b.take();
    const all = select(batch, new Set<TraceKind>(['mmio_write', 'msi']));
    expect(all.records.map((r) => r.seq)).to.deep.equal([1, 2, 3]);
    expect(all.dropped).to.equal(1);
    const msi = select(batch, new Set<TraceKind>(['msi']));
    expect(msi.records.map((r) => r.seq)).to.deep.equal([2]);
    expect(msi.dropped).to.equal(0);
  });

  it('events go to the browser with addresses and values in hex', function () {
    const at = T0 + 1_500_000n;
    expect(wireEvent({ seq: 7, time: at, session: 2, ev: { kind: 'mmio_write', bar: 0, offset: 0x1cn, size: 4, value: 0xc0ffeen } }, T0))
      .to.deep.equal({ seq: 7, t: 1500, session: 2, kind: 'mmio_write', bar: 0, offset: '0x1c', size: 4, value: '0xc0ffee' });
    expect(wireEvent({ seq: 1, time: T0, session: 1, ev: { kind: 'config_write', offset: 0x52, size: 2, value: 1 } }, T0))
      .to.include({ kind: 'config_write', offset: '0x52', size: 2, value: '0x1' });
    expect(wireEvent({ seq: 1, time: T0, session: 1, ev: { kind: 'dma_write', addr: 0x2_0000_0000n, len: 4096 } }, T0))
      .to.include({ addr: '0x200000000', len: 4096 });
    expect(wireEvent({ seq: 1, time: T0, session: 1, ev: { kind: 'msi', irq: 2, vector: 5 } }, T0)).to.include({ irq: 'MSIX', vector: 5 });
    expect(wireEvent({ seq: 1, time: T0, session: 1, ev: { kind: 'intx', level: true } }, T0)).to.include({ level: 1 });
    expect(wireEvent({ seq: 1, time: T0, session: 1, ev: { kind: 'reset', reset: 1 } }, T0)).to.include({ reset: 'FLR' });
  });

  it("the browser's messages: pause and filter only, exactly", function () {
    expect(parseClientMessage('{"type":"pause","paused":true}')).to.deep.equal({ type: 'pause', paused: true });
    expect(parseClientMessage('{"type":"filter","kinds":["msi","msi","intx"]}')).to.deep.equal({ type: 'filter', kinds: ['msi', 'intx'] });
    expect(parseClientMessage('{"type":"filter","kinds":[]}')).to.deep.equal({ type: 'filter', kinds: [] });
    for (const bad of ['', 'nope', '[]', 'null', '{"type":"pause"}', '{"type":"pause","paused":1}', '{"type":"pause","paused":true,"x":1}',
      '{"type":"filter","kinds":["mmio_write","rm -rf"]}', '{"type":"filter","kinds":"msi"}', '{"type":"quit"}', `{"type":"filter","kinds":${JSON.stringify(Array(20).fill('msi'))}}`]) {
      expect(parseClientMessage(bad), bad).to.equal(null);
    }
  });
});

describe('dashboard: PNG decoder (test/lib/png.ts)', function () {
  /** A PNG of `rgba` with row y filtered by filter type y % 5, the way an encoder may. */
  function encode(width: number, height: number, px: Buffer, channels: 3 | 4): Buffer {
    const stride = width * channels;
    const raw = Buffer.alloc(height * (stride + 1));
    const at = (x: number, y: number, i: number): number => (x < 0 || y < 0 ? 0 : (px[y * stride + x * channels + i] ?? 0));
    for (let y = 0; y < height; y++) {
      const f = y % 5;
      raw[y * (stride + 1)] = f;
      for (let x = 0; x < width; x++) {
        for (let i = 0; i < channels; i++) {
          const v = at(x, y, i);
          const a = at(x - 1, y, i);
          const b = at(x, y - 1, i);
          const c = at(x - 1, y - 1, i);
          const p = a + b - c;
          const pred = [0, a, b, (a + b) >> 1, Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c][f] ?? 0;
          raw[y * (stride + 1) + 1 + x * channels + i] = (v - pred) & 0xff;
        }
      }
    }
    const chunk = (type: string, data: Buffer): Buffer => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(body) >>> 0);
      return Buffer.concat([len, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr.set([8, channels === 3 ? 2 : 6, 0, 0, 0], 8);
    return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
  }

  it('decodes RGB and RGBA through every filter type', function () {
    const w = 7;
    const h = 10;
    for (const ch of [3, 4] as const) {
      const px = Buffer.alloc(w * h * ch);
      for (let i = 0; i < px.length; i++) px[i] = (i * 37 + (i >> 3) * 11) & 0xff;
      const img = decodePng(encode(w, h, px, ch));
      expect([img.width, img.height]).to.deep.equal([w, h]);
      for (let p = 0; p < w * h; p++) {
        for (let i = 0; i < 3; i++) if (img.rgba[p * 4 + i] !== px[p * ch + i]) expect.fail(`channels ${ch}: pixel ${p} channel ${i}`);
        expect(img.rgba[p * 4 + 3]).to.equal(ch === 4 ? px[p * ch + 3] : 255);
      }
    }
  });

  it('refuses a bad CRC and a truncated file', function () {
    const png = encode(2, 2, Buffer.alloc(12, 9), 3);
    const bad = Buffer.from(png);
    bad[20] = (bad[20] ?? 0) ^ 1;
    expect(() => decodePng(bad)).to.throw(/CRC/);
    expect(() => decodePng(png.subarray(0, 40))).to.throw(/truncated/);
    expect(() => decodePng(Buffer.from('GIF89a'))).to.throw(/not a PNG/);
  });
});

// ---- the server, over real connections

function idleSession(): ModelSession {
  const socket = new Duplex({ read() {}, write(_c, _e, cb: () => void) { cb(); } });
  return new ModelSession(socket, { backend: new FakeBackend() });
}

function get(d: Dashboard, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: d.port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

type Json = Record<string, unknown> & { type?: string };

/** A WebSocket client that keeps what it gets. */
class Browser {
  readonly texts: Json[] = [];
  readonly frames: Buffer[] = [];
  closeCode = 0;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.frames.push(data);
      else this.texts.push(JSON.parse(data.toString()) as Json);
    });
    ws.on('close', (code: number) => (this.closeCode = code));
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<Browser> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      const b = new Browser(ws);
      ws.once('open', () => resolve(b));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  async waitFor(pred: (m: Json) => boolean, ms = 3000): Promise<Json> {
    const end = Date.now() + ms;
    for (;;) {
      const m = this.texts.find(pred);
      if (m) return m;
      if (Date.now() > end) throw new Error(`no such message within ${ms} ms; got ${JSON.stringify(this.texts.map((t) => t.type))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  send(m: unknown): void {
    this.ws.send(JSON.stringify(m));
  }

  async closed(ms = 3000): Promise<number> {
    const end = Date.now() + ms;
    while (this.ws.readyState !== WebSocket.CLOSED) {
      if (Date.now() > end) throw new Error('still open');
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.closeCode;
  }

  close(): void {
    this.ws.close();
  }
}

const wsUrl = (d: Dashboard, token = d.token): string => `ws://127.0.0.1:${d.port}/ws?token=${token}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A QMP client stand-in for a running QEMU 10.0.2 whose display is whatever `screen` returns. */
const runningQmp = (screen: () => ScreenPixels): Qmp => ({
  closed: false,
  greeting: { version: { qemu: { major: 10, minor: 0, micro: 2 } } },
  queryStatus: () => Promise.resolve({ running: true, status: 'running' }),
  screenPixels: () => Promise.resolve(screen()),
}) as unknown as Qmp;
const until = (what: string, cond: () => boolean, ms = 3000): Promise<void> => waitUntil(what, cond, ms);

describe('dashboard: the server (no QEMU, no browser)', function () {
  let server: GatewayServer;
  let d: Dashboard;
  let session: ModelSession;
  const browsers: Browser[] = [];
  const open = async (url: string, headers?: Record<string, string>): Promise<Browser> => {
    const b = await Browser.open(url, headers);
    browsers.push(b);
    return b;
  };

  beforeEach(async function () {
    server = new GatewayServer({ backend: new FakeBackend() });
    session = idleSession();
    server.sessions.add(session);
    d = await startDashboard({ server, qmp: () => null, port: 0 });
  });

  afterEach(async function () {
    for (const b of browsers.splice(0)) b.ws.terminate();
    await d.close();
    await server.close();
  });

  it('listens on 127.0.0.1 on the port it reports; the URL carries the token', function () {
    expect(d.url).to.equal(`http://127.0.0.1:${d.port}/?token=${d.token}`);
    expect(d.token).to.match(/^[0-9a-f]{32}$/);
    expect(d.port).to.be.above(0);
  });

  it('the page needs the token: missing or wrong gets 403 and no page', async function () {
    for (const path of ['/', '/?token=', `/?token=${newToken()}`, `/?token=${d.token.slice(1)}`, '/dashboard.js', `/dashboard.js?token=x${d.token}`]) {
      const r = await get(d, path);
      expect(r.status, path).to.equal(403);
      expect(r.body).to.not.include('<canvas');
      expect(r.body).to.not.include(d.token);
    }
    const ok = await get(d, `/?token=${d.token}`);
    expect(ok.status).to.equal(200);
    expect(ok.body).to.include('<canvas');
    expect(ok.body).to.include(`dashboard.js?token=${d.token}`);
    expect(ok.headers['content-security-policy']).to.include("default-src 'none'");
    expect((await get(d, `/dashboard.js?token=${d.token}`)).body).to.include('new WebSocket');
    expect((await get(d, `/dashboard.css?token=${d.token}`)).status).to.equal(200);
    expect((await get(d, `/nothing?token=${d.token}`)).status).to.equal(404);
    expect((await get(d, `/?token=${d.token}`, {}, 'POST')).status).to.equal(405);
  });

  it('another Host or Origin is refused even with the token (DNS rebinding)', async function () {
    expect((await get(d, `/?token=${d.token}`, { Host: `evil.example:${d.port}` })).status).to.equal(403);
    expect((await get(d, `/?token=${d.token}`, { Host: `localhost:${d.port}` })).status).to.equal(200);
    expect((await get(d, `/?token=${d.token}`, { Origin: 'http://evil.example' })).status).to.equal(403);
    let err = await open(wsUrl(d), { Origin: 'http://evil.example' }).then(() => '', (e: Error) => e.message);
    expect(err).to.equal('refused: 403');
    err = await open(wsUrl(d), { Host: `evil.example:${d.port}` }).then(() => '', (e: Error) => e.message);
    expect(err).to.equal('refused: 403');
    const b = await open(wsUrl(d), { Origin: `http://127.0.0.1:${d.port}` });
    await b.waitFor((m) => m.type === 'hello');
  });

  it('the WebSocket needs the token: missing or wrong is refused with 403', async function () {
    for (const url of [`ws://127.0.0.1:${d.port}/ws`, wsUrl(d, newToken()), wsUrl(d, '')]) {
      const err = await open(url).then(() => '', (e: Error) => e.message);
      expect(err, url).to.equal('refused: 403');
    }
    expect(await open(`ws://127.0.0.1:${d.port}/other?token=${d.token}`).then(() => '', (e: Error) => e.message)).to.equal('refused: 404');
  });

  it('at most 8 browsers at a time: the 9th is refused with 503 until one leaves', async function () {
    const eight = await Promise.all(Array.from({ length: 8 }, () => open(wsUrl(d))));
    expect(await open(wsUrl(d)).then(() => '', (e: Error) => e.message)).to.equal('refused: 503');
    eight[0]?.close();
    await eight[0]?.closed();
    // The gateway sees the leaving browser's close a moment after the browser does.
    const end = Date.now() + 3000;
    let ninth: Browser | null = null;
    while (ninth === null) {
      ninth = await open(wsUrl(d)).catch(async (e: Error) => {
        if (Date.now() > end) throw e;
        await sleep(20);
        return null;
      });
    }
    await ninth.waitFor((m) => m.type === 'hello');
  });

  it('a browser gets hello, then stats every second: the sessions, "no QEMU"', async function () {
    session.counters.mmio_writes = 10n;
    const b = await open(wsUrl(d));
    const hello = await b.waitFor((m) => m.type === 'hello');
    expect(hello.kinds).to.include.members(['mmio_write', 'mmio_read', 'config_write', 'dma_read', 'dma_write', 'msi', 'intx']);
    const first = await b.waitFor((m) => m.type === 'stats');
    expect(first.qemu).to.deep.equal({ state: 'none' });
    expect(first.display).to.deep.equal({ state: 'none' });
    const sessions = first.sessions as { id: number; counters: Record<string, string>; state: string }[];
    expect(sessions.map((s) => [s.id, s.state, s.counters.mmio_writes])).to.deep.equal([[1, 'hello', '10']]);
    session.counters.mmio_writes = 2n ** 63n;
    const second = await b.waitFor((m) => m.type === 'stats' && m !== first, 2500);
    const s2 = (second.sessions as { counters: Record<string, string>; rates: Record<string, number> }[])[0];
    expect(s2?.counters.mmio_writes).to.equal((2n ** 63n).toString());
    expect(s2?.rates.mmio_writes).to.be.above(1e18);
    expect(s2?.rates.mmio_reads).to.equal(0);
    // A session that closes leaves the list.
    session.close('the test is done with it');
    await b.waitFor((m) => m.type === 'stats' && (m.sessions as unknown[]).length === 0, 2500);
  });

  it('traces a session only while a browser shows the trace; events arrive batched, in hex', async function () {
    expect(session.tracer).to.equal(null);
    const b = await open(wsUrl(d));
    await b.waitFor((m) => m.type === 'hello');
    expect(session.tracer).to.be.a('function');
    session.tracer?.({ kind: 'mmio_write', bar: 0, offset: 0x40n, size: 4, value: 0xdeadbeefn }, process.hrtime.bigint());
    session.tracer?.({ kind: 'msi', irq: 1, vector: 0 }, process.hrtime.bigint());
    const t = await b.waitFor((m) => m.type === 'trace');
    expect((t.events as Json[]).map((e) => [e.session, e.kind, e.bar, e.offset, e.value])).to.deep.equal([
      [1, 'mmio_write', 0, '0x40', '0xdeadbeef'], [1, 'msi', undefined, undefined, undefined]]);
    expect(t.dropped).to.equal(0);

    // A session that comes later is traced too.
    const later = idleSession();
    server.sessions.add(later);
    server.emit('session', later);
    expect(later.tracer).to.be.a('function');

    b.send({ type: 'pause', paused: true });
    await until('untraced when paused', () => session.tracer === null);
    b.send({ type: 'pause', paused: false });
    await until('traced again', () => session.tracer !== null);
    b.send({ type: 'filter', kinds: [] });
    await until('untraced with no kind shown', () => session.tracer === null);
    b.send({ type: 'filter', kinds: ['msi'] });
    await until('traced for MSI', () => session.tracer !== null);
    b.close();
    await b.closed();
    await until('untraced with no browser', () => session.tracer === null);
    expect(later.tracer).to.equal(null);
  });

  it('a flood is sampled: at most 250 events of a kind per batch, the rest counted as not shown', async function () {
    const b = await open(wsUrl(d));
    await b.waitFor((m) => m.type === 'hello');
    const tracer = session.tracer;
    if (tracer === null) throw new Error('not traced');
    const now = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) tracer({ kind: 'mmio_write', bar: 0, offset: 0n, size: 4, value: BigInt(i) }, now);
    tracer({ kind: 'intx', level: true }, now);
    const t = await b.waitFor((m) => m.type === 'trace');
    const events = t.events as Json[];
    expect(events.filter((e) => e.kind === 'mmio_write').length).to.equal(250);
    expect(events.filter((e) => e.kind === 'intx').length).to.equal(1);
    expect(t.dropped).to.equal(10_000 - 250);
  });

  it('filters are per browser: one that shows only MSI gets no writes', async function () {
    const all = await open(wsUrl(d));
    const msiOnly = await open(wsUrl(d));
    await all.waitFor((m) => m.type === 'hello');
    await msiOnly.waitFor((m) => m.type === 'hello');
    msiOnly.send({ type: 'filter', kinds: ['msi'] });
    // The filter is in force once the browser's next message would reflect it: wait for a round trip.
    await sleep(150);
    session.tracer?.({ kind: 'mmio_write', bar: 0, offset: 0x40n, size: 4, value: 1n }, process.hrtime.bigint());
    session.tracer?.({ kind: 'msi', irq: 1, vector: 0 }, process.hrtime.bigint());
    const a = await all.waitFor((m) => m.type === 'trace');
    const m = await msiOnly.waitFor((x) => x.type === 'trace');
    expect((a.events as Json[]).map((e) => e.kind)).to.deep.equal(['mmio_write', 'msi']);
    expect((m.events as Json[]).map((e) => e.kind)).to.deep.equal(['msi']);
  });

  it('malformed browser messages close that connection (1008), the dashboard carries on', async function () {
    for (const bad of ['not json', '{"type":"quit"}', Buffer.from([1, 2, 3])]) {
      const b = await open(wsUrl(d));
      await b.waitFor((m) => m.type === 'hello');
      b.ws.send(bad);
      expect(await b.closed()).to.equal(1008);
    }
    const big = await open(wsUrl(d));
    big.ws.send('x'.repeat(10_000));
    expect(await big.closed()).to.equal(1009);
    const fine = await open(wsUrl(d));
    await fine.waitFor((m) => m.type === 'hello');
  });

  it('QMP failing: the status says so, nothing crashes', async function () {
    await d.close();
    const failing = {
      closed: false,
      queryStatus: () => Promise.reject(new PciemError('PCIEM_ERR_TIMEOUT', 'query-status: no answer')),
      screenPixels: () => Promise.reject(new PciemError('PCIEM_ERR_QMP', 'screendump: GenericError: no display')),
    } as unknown as Qmp;
    d = await startDashboard({ server, qmp: () => failing, port: 0, frameIntervalMs: 50 });
    const b = await open(wsUrl(d));
    const s = await b.waitFor((m) => m.type === 'stats' && (m.display as Json).state === 'error', 3000);
    expect(s.qemu).to.deep.equal({ state: 'error', error: 'query-status: no answer' });
    expect((s.display as Json).error).to.include('no display');
  });

  it('frames: a grab goes to each browser once, the same picture is not sent again', async function () {
    await d.close();
    let pixel = 0x10;
    let grabs = 0;
    const qmp = runningQmp(() => {
      grabs++;
      return { width: 2, height: 1, pixels: Buffer.from([pixel, 2, 3, 4, 5, 6]) };
    });
    d = await startDashboard({ server, qmp: () => qmp, port: 0, frameIntervalMs: 30 });
    const b = await open(wsUrl(d));
    const s = await b.waitFor((m) => m.type === 'stats');
    expect(s.qemu).to.deep.equal({ state: 'up', status: 'running', running: true, version: '10.0.2' });
    await until('several grabs', () => grabs > 3);
    expect(b.frames.length).to.equal(1);
    const f = b.frames[0] ?? Buffer.alloc(0);
    expect(f.length).to.equal(FRAME_HEADER_BYTES + 6);
    expect([f.readUInt32LE(0), f.readUInt16LE(4), f.readUInt16LE(8), f.readUInt16LE(10), f.readUInt32LE(12)]).to.deep.equal([FRAME_MAGIC, 1, 2, 1, 1]);
    expect([...f.subarray(FRAME_HEADER_BYTES)]).to.deep.equal([0x10, 2, 3, 4, 5, 6]);
    pixel = 0x20;
    await until('the new picture', () => b.frames.length === 2);
    await sleep(100);
    expect(b.frames.length).to.equal(2);
    expect(b.frames[1]?.readUInt32LE(12)).to.equal(2);
    // A browser that comes later gets the current picture at once.
    const late = await open(wsUrl(d));
    await until('the late browser has a frame', () => late.frames.length > 0);
    expect(late.frames[0]?.[FRAME_HEADER_BYTES]).to.equal(0x20);
    // No browser: no grabs.
    for (const x of browsers) x.close();
    await Promise.all(browsers.map((x) => x.closed()));
    await sleep(50);
    const n = grabs;
    await sleep(200);
    expect(grabs).to.equal(n);
  });

  it('a slow screendump spaces the grabs out: QEMU is held up at most a fifth of the time', async function () {
    await d.close();
    // Each grab takes 100 ms (QEMU writing the picture); frameIntervalMs alone would grab every 100 ms.
    const starts: number[] = [];
    const qmp = {
      ...runningQmp(() => ({ width: 1, height: 1, pixels: Buffer.from([1, 2, 3]) })),
      screenPixels: async () => {
        starts.push(performance.now());
        await sleep(100);
        return { width: 1, height: 1, pixels: Buffer.from([1, 2, 3]) };
      },
    } as unknown as Qmp;
    d = await startDashboard({ server, qmp: () => qmp, port: 0, frameIntervalMs: 20 });
    const b = await open(wsUrl(d));
    await b.waitFor((m) => m.type === 'hello');
    await until('four grabs', () => starts.length >= 4, 5000);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(Math.min(...gaps), `gaps ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`).to.be.at.least(450);
  });

  it('a browser that does not read gets no more until it catches up, then the newest picture', async function () {
    await d.close();
    // A new 3 MiB picture at every grab.
    const side = 1024;
    let grabs = 0;
    const qmp = runningQmp(() => ({ width: side, height: side, pixels: Buffer.alloc(side * side * 3, ++grabs & 0xff) }));
    d = await startDashboard({ server, qmp: () => qmp, port: 0, frameIntervalMs: 20 });
    const b = await open(wsUrl(d));
    b.ws.pause();
    await until('60 pictures grabbed', () => grabs >= 60, 10_000);
    b.ws.resume();
    const last = (): number => b.frames.at(-1)?.readUInt32LE(12) ?? 0;
    // Caught up: the newest picture arrives (not a backlog of every picture grabbed).
    await until('the newest frame', () => last() >= 60, 10_000);
    const got = b.frames.length;
    console.log(`      ${got} frames received of ${last()}`);
    expect(got, `${got} frames received of ${last()} pictures`).to.be.below(last() / 2);
  });

  it('close() ends the browsers, the port and the tracing', async function () {
    const b = await open(wsUrl(d));
    await b.waitFor((m) => m.type === 'hello');
    expect(session.tracer).to.be.a('function');
    await d.close();
    await b.closed();
    expect(session.tracer).to.equal(null);
    const refused = await new Promise<string>((resolve) => {
      const s = connect(d.port, '127.0.0.1');
      s.on('connect', () => resolve('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''));
    });
    expect(refused).to.equal('ECONNREFUSED');
  });

  it('a token given by the caller is used; a weak one, a bad port or a port in use is refused with a code', async function () {
    await d.close();
    d = await startDashboard({ server, qmp: () => null, port: 0, token: 'my-own-token-0123456789' });
    expect(d.url).to.match(/\?token=my-own-token-0123456789$/);
    expect((await get(d, '/?token=my-own-token-0123456789')).status).to.equal(200);
    const err = await startDashboard({ server, qmp: () => null, port: 0, token: 'weak' }).then(() => null, (e: PciemError) => e.code);
    expect(err).to.equal('PCIEM_ERR_INVALID');
    for (const port of [-1, 65536, 1.5]) {
      expect(await startDashboard({ server, qmp: () => null, port }).then(() => null, (e: PciemError) => e.code), String(port)).to.equal('PCIEM_ERR_INVALID');
    }
    const taken = await startDashboard({ server, qmp: () => null, port: d.port }).then(async (x) => (await x.close(), null), (e: PciemError) => e.code);
    expect(taken).to.equal('PCIEM_ERR_BUSY');
  });
});
