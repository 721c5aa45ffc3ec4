// The gateway's dashboard (docs/dashboard.md): one HTTP port serving a
// static page and a WebSocket that streams the card's display (QMP
// screendumps), the relay's event trace, the sessions' counters and QEMU's
// status to it. Loopback and a token by default; nothing runs while no
// browser is connected.
//
//   const d = await startDashboard({ server, qmp: () => qmp, port: 0 });
//   log.info('dashboard', { url: d.url });
//   await d.close();
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { PciemError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Qmp } from '../qmp.js';
import type { GatewayServer } from '../relay/server.js';
import type { ModelSession } from '../relay/session.js';
import { TRACE_KINDS, type TraceKind, type Tracer } from '../relay/trace.js';
import { checkToken, hostAllowed, newToken, originAllowed, tokenMatches, urlHost } from './auth.js';
import {
  MESSAGES_VERSION, frameMessage, parseClientMessage, FRAME_HEADER_BYTES,
  type DisplayStatus, type QemuStatus, type ServerMessage, type SessionStats,
} from './messages.js';
import { select, TraceBuffer, wireEvent } from './trace-buffer.js';

export interface DashboardOptions {
  /** Sessions come and go: the dashboard follows server.sessions and its 'session' event. */
  server: GatewayServer;
  /** The current QEMU's QMP client (it may change when QEMU restarts; null while there is none). */
  qmp: () => Qmp | null;
  /** 0: any free port. */
  port: number;
  /** Bind address (default 127.0.0.1). Anything else exposes the dashboard to that network: the caller's choice. */
  host?: string;
  /** Default: 128 random bits, hex. Otherwise 16 to 256 URL-safe characters. */
  token?: string;
  log?: Logger;
  /** Where QEMU writes the screendumps (it must be able to); default a private temporary directory. */
  screendumpDir?: string;
  /** How often the display is grabbed while a browser is connected (default 250 ms). */
  frameIntervalMs?: number;
}

export interface Dashboard {
  /** http://HOST:PORT/?token=TOKEN */
  readonly url: string;
  readonly token: string;
  readonly port: number;
  close(): Promise<void>;
}

const TRACE_INTERVAL_MS = 100;
const STATS_INTERVAL_MS = 1000;
/** Events of each kind a batch carries at most (per 100 ms); the rest are counted as not shown. */
const TRACE_PER_KIND = 250;
const MAX_CLIENTS = 8;
/** A browser with more than this much not yet sent gets no frames or trace until it catches up. */
const SLOW_CLIENT_BYTES = 4 << 20;
/** The longest message a browser may send (its messages are a few dozen bytes). */
const MAX_CLIENT_MESSAGE = 4096;
const QMP_TIMEOUT_MS = 5000;
/**
 * QEMU writes a screendump on its main loop, and the card model, on that
 * loop too, does nothing meanwhile (in the TCG VM a 640x480 PPM to a local
 * file took 37-44 ms, 52-80 ms with the host's cores busy). So a grab that took d ms is followed by the next
 * no sooner than GRAB_SPACING * d after it started: the dashboard holds
 * QEMU up at most 1/GRAB_SPACING of the time, whatever frameIntervalMs says.
 */
const GRAB_SPACING = 5;

const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));
const PAGES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

type Counters = ModelSession['counters'];

interface Client {
  ws: WebSocket;
  paused: boolean;
  kinds: Set<TraceKind>;
  /** The number of the last frame it was sent. */
  frame: number;
  /** Events of its kinds not shown since its last trace message. */
  dropped: number;
}

interface Watched {
  id: number;
  tracer: Tracer;
  onClose: () => void;
  prev: { counters: Counters; time: bigint } | null;
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const token = opts.token === undefined ? newToken() : checkToken(opts.token);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new PciemError('PCIEM_ERR_INVALID', `dashboard port ${opts.port}: not 0..65535`);
  const pages = new Map<string, { body: Buffer; type: string }>();
  for (const [path, p] of Object.entries(PAGES)) {
    let text: string;
    try {
      text = await readFile(join(STATIC_DIR, p.file), 'utf8');
    } catch (e) {
      throw new PciemError('PCIEM_ERR_IO', `the dashboard's page is missing: ${(e as Error).message}`);
    }
    // The page's own requests carry the token too; it is URL- and HTML-safe (checkToken).
    pages.set(path, { body: Buffer.from(text.replaceAll('{{TOKEN}}', token)), type: p.type });
  }
  const ownDir = opts.screendumpDir === undefined ? await mkdtemp(join(tmpdir(), 'pciem-dashboard-')) : null;
  const d = new DashboardServer(opts, token, pages, ownDir ?? opts.screendumpDir ?? '', ownDir);
  try {
    await d.listen();
  } catch (e) {
    await d.close();
    throw e;
  }
  return d;
}

class DashboardServer implements Dashboard {
  url = '';
  port = 0;
  private readonly host: string;
  private readonly log: Logger;
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<Client>();
  private readonly watched = new Map<ModelSession, Watched>();
  private nextSession = 1;
  private readonly trace = new TraceBuffer(TRACE_PER_KIND);
  private tracing = false;
  private timers: NodeJS.Timeout[] = [];
  /** The next grab, while browsers watch; a new generation stops an older chain. */
  private grabTimer: NodeJS.Timeout | null = null;
  private grabGeneration = 0;
  private readonly frameIntervalMs: number;
  /** The last display grabbed, as the message that carries it. */
  private frame: { number: number; message: Buffer } | null = null;
  private display: DisplayStatus = { state: 'none' };
  private grabbing = false;
  private statsBusy = false;
  private lastStats: string | null = null;
  private lastError = '';
  private closed = false;
  private readonly t0 = process.hrtime.bigint();
  private readonly onSession = (s: ModelSession): void => this.watch(s);

  constructor(
    private readonly opts: DashboardOptions,
    readonly token: string,
    private readonly pages: Map<string, { body: Buffer; type: string }>,
    private readonly dumpDir: string,
    private readonly ownDir: string | null,
  ) {
    this.host = opts.host ?? '127.0.0.1';
    this.log = (opts.log ?? silentLogger).child({ part: 'dashboard' });
    this.frameIntervalMs = Math.max(20, opts.frameIntervalMs ?? 250);
    this.http = createServer((req, res) => this.onRequest(req, res));
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (_e, socket: Duplex) => socket.destroy());
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_MESSAGE, clientTracking: false, perMessageDeflate: false });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', (e: NodeJS.ErrnoException) => {
        const code = e.code === 'EADDRINUSE' ? 'PCIEM_ERR_BUSY' : e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' ? 'PCIEM_ERR_INVALID' : 'PCIEM_ERR_IO';
        reject(new PciemError(code, `dashboard on ${this.host}:${this.opts.port}: ${e.message}`, e.code));
      });
      this.http.listen(this.opts.port, this.host, () => resolve());
    });
    this.http.on('error', (e) => this.log.error('dashboard server error', { error: e.message }));
    const addr = this.http.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : this.opts.port;
    this.url = `http://${urlHost(this.host)}:${this.port}/?token=${this.token}`;
    for (const s of this.opts.server.sessions) this.watch(s);
    this.opts.server.on('session', this.onSession);
    this.log.info('dashboard: open this URL (the token is the password)', { url: this.url });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    this.opts.server.off('session', this.onSession);
    for (const s of [...this.watched.keys()]) this.unwatch(s);
    for (const c of this.clients) c.ws.terminate();
    this.clients.clear();
    this.wss.close();
    if (this.http.listening) {
      const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeAllConnections();
      await closed;
    }
    if (this.ownDir !== null) await rm(this.ownDir, { recursive: true, force: true });
  }

  // ---- HTTP and the WebSocket upgrade

  /** Whether a request names this dashboard and carries the token. */
  private admitted(req: IncomingMessage): URL | null {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard');
    } catch {
      return null;
    }
    const origin = req.headers.origin;
    if (!hostAllowed(req.headers.host, this.host, this.port) || !originAllowed(origin, this.host, this.port)) return null;
    return tokenMatches(url.searchParams.get('token'), this.token) ? url : null;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = this.admitted(req);
    if (url === null) {
      this.log.debug('dashboard request refused', { path: (req.url ?? '').replace(/\?.*/, '') });
      res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('403 Forbidden: open the URL the gateway printed at start-up (it carries the token)\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', ...SECURITY_HEADERS });
      res.end();
      return;
    }
    const page = this.pages.get(url.pathname);
    if (page === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('404 Not Found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': page.type, 'Content-Length': page.body.length, ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : page.body);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const url = this.admitted(req);
    const refuse = (status: string): void => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      socket.destroy();
    };
    if (url === null || this.closed) return refuse('403 Forbidden');
    if (url.pathname !== '/ws') return refuse('404 Not Found');
    if (this.clients.size >= MAX_CLIENTS) return refuse('503 Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onClient(ws));
  }

  // ---- browsers

  private onClient(ws: WebSocket): void {
    const c: Client = { ws, paused: false, kinds: new Set(TRACE_KINDS), frame: 0, dropped: 0 };
    this.clients.add(c);
    this.log.info('dashboard: a browser connected', { browsers: this.clients.size });
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(c, data, isBinary));
    ws.on('error', (e) => this.log.debug('dashboard: browser connection error', { error: e.message }));
    ws.on('close', () => {
      this.clients.delete(c);
      this.log.info('dashboard: a browser left', { browsers: this.clients.size });
      if (this.clients.size === 0) this.stopTimers();
      this.updateTracing();
    });
    this.send(c, { type: 'hello', version: MESSAGES_VERSION, kinds: TRACE_KINDS, frameIntervalMs: this.frameIntervalMs, traceIntervalMs: TRACE_INTERVAL_MS });
    if (this.lastStats !== null) ws.send(this.lastStats);
    this.sendFrame(c);
    if (this.clients.size === 1) this.startTimers();
    this.updateTracing();
  }

  private onMessage(c: Client, data: RawData, isBinary: boolean): void {
    const text = isBinary ? null : Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
    const m = text === null ? null : parseClientMessage(text);
    if (m === null) {
      this.log.debug('dashboard: a browser sent something else than a dashboard message; closing it');
      c.ws.close(1008, 'not a dashboard message');
      return;
    }
    if (m.type === 'pause') c.paused = m.paused;
    else c.kinds = new Set(m.kinds);
    // What was queued under the old setting goes out under the new one.
    c.dropped = 0;
    this.updateTracing();
  }

  private send(c: Client, m: ServerMessage): void {
    c.ws.send(JSON.stringify(m));
  }

  private broadcast(text: string): void {
    for (const c of this.clients) if (c.ws.bufferedAmount <= SLOW_CLIENT_BYTES) c.ws.send(text);
  }

  private startTimers(): void {
    this.timers = [
      setInterval(() => this.flushTrace(), TRACE_INTERVAL_MS),
      setInterval(() => void this.stats(), STATS_INTERVAL_MS),
    ];
    void this.grabLoop(++this.grabGeneration);
    void this.stats();
  }

  private stopTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.grabGeneration++;
    if (this.grabTimer !== null) clearTimeout(this.grabTimer);
    this.grabTimer = null;
    // Rates restart from the next sample, not from before the gap.
    for (const w of this.watched.values()) w.prev = null;
  }

  // ---- sessions and the trace

  private watch(s: ModelSession): void {
    if (this.watched.has(s) || s.closed || this.closed) return;
    const id = this.nextSession++;
    const w: Watched = {
      id,
      tracer: (ev, time) => this.trace.record(id, ev, time),
      onClose: () => this.unwatch(s),
      prev: null,
    };
    this.watched.set(s, w);
    s.once('close', w.onClose);
    if (this.tracing) s.tracer = w.tracer;
  }

  private unwatch(s: ModelSession): void {
    const w = this.watched.get(s);
    if (w === undefined) return;
    this.watched.delete(s);
    s.off('close', w.onClose);
    if (s.tracer === w.tracer) s.tracer = null;
  }

  /** The sessions are traced while some browser shows some kind of event, and only then. */
  private updateTracing(): void {
    const wanted = new Set<TraceKind>();
    for (const c of this.clients) if (!c.paused) for (const k of c.kinds) wanted.add(k);
    this.trace.wanted = wanted;
    const on = wanted.size > 0 && !this.closed;
    if (on === this.tracing) return;
    this.tracing = on;
    for (const [s, w] of this.watched) {
      if (on) s.tracer = w.tracer;
      else if (s.tracer === w.tracer) s.tracer = null;
    }
    if (!on) this.trace.take();
  }

  private flushTrace(): void {
    if (!this.tracing) return;
    const batch = this.trace.take();
    for (const c of this.clients) {
      if (c.paused) continue;
      const { records, dropped } = select(batch, c.kinds);
      if (records.length === 0 && dropped === 0 && c.dropped === 0) continue;
      if (c.ws.bufferedAmount > SLOW_CLIENT_BYTES) {
        c.dropped += records.length + dropped;
        continue;
      }
      this.send(c, { type: 'trace', events: records.map((r) => wireEvent(r, this.t0)), dropped: dropped + c.dropped });
      c.dropped = 0;
    }
  }

  // ---- counters, rates and QEMU's status

  private async stats(): Promise<void> {
    if (this.statsBusy || this.closed) return;
    this.statsBusy = true;
    try {
      const qemu = await this.qemuStatus();
      if (this.closed || this.clients.size === 0) return;
      const now = process.hrtime.bigint();
      const sessions: SessionStats[] = [];
      for (const [s, w] of this.watched) {
        const counters = { ...s.counters };
        const rates: Record<string, number> = {};
        if (w.prev !== null && now > w.prev.time) {
          const dt = Number(now - w.prev.time) / 1e9;
          for (const k of Object.keys(counters) as (keyof Counters)[]) rates[k] = Math.round(Number(counters[k] - w.prev.counters[k]) / dt);
        }
        w.prev = { counters, time: now };
        sessions.push({
          id: w.id, model: s.modelName, device: s.deviceName, state: s.state,
          counters: Object.fromEntries(Object.entries(counters).map(([k, v]) => [k, v.toString()])), rates,
        });
      }
      const msg: ServerMessage = { type: 'stats', sessions, qemu, display: this.display, trace: { traced: this.trace.traced, dropped: this.trace.droppedTotal } };
      this.lastStats = JSON.stringify(msg);
      this.broadcast(this.lastStats);
    } catch (e) {
      this.log.error('dashboard: the stats failed', { error: e instanceof Error ? e.message : String(e) });
    } finally {
      this.statsBusy = false;
    }
  }

  private currentQmp(): Qmp | null {
    try {
      const q = this.opts.qmp();
      return q === null || q.closed ? null : q;
    } catch {
      return null;
    }
  }

  private async qemuStatus(): Promise<QemuStatus> {
    const q = this.currentQmp();
    if (q === null) return { state: 'none' };
    try {
      const s = await q.queryStatus({ timeoutMs: QMP_TIMEOUT_MS });
      const v = q.greeting.version.qemu;
      return { state: 'up', status: s.status, running: s.running, version: `${v.major}.${v.minor}.${v.micro}` };
    } catch (e) {
      return { state: 'error', error: e instanceof Error ? e.message : String(e) };
    }
  }

  // ---- the display

  /** Grabs, then schedules the next grab by frameIntervalMs and GRAB_SPACING. */
  private async grabLoop(generation: number): Promise<void> {
    this.grabTimer = null;
    const t0 = performance.now();
    await this.grab();
    if (generation !== this.grabGeneration || this.closed) return;
    const took = performance.now() - t0;
    const wait = Math.max(this.frameIntervalMs, GRAB_SPACING * took) - took;
    this.grabTimer = setTimeout(() => void this.grabLoop(generation), Math.max(0, wait));
  }

  /** Grabs the display (one grab at a time) and sends it to the browsers that do not have it yet. */
  private async grab(): Promise<void> {
    if (this.grabbing || this.closed) return;
    const q = this.currentQmp();
    if (q === null) {
      this.display = { state: 'none' };
      return;
    }
    this.grabbing = true;
    try {
      const s = await q.screenPixels(join(this.dumpDir, 'screen.ppm'), {}, { timeoutMs: QMP_TIMEOUT_MS });
      if (this.closed) return;
      if (s.width < 1 || s.height < 1 || s.width > 0xffff || s.height > 0xffff) throw new PciemError('PCIEM_ERR_IO', `a ${s.width}x${s.height} display`);
      const f = this.frame;
      const same = f !== null && f.message.readUInt16LE(8) === s.width && f.message.readUInt16LE(10) === s.height && f.message.subarray(FRAME_HEADER_BYTES).equals(s.pixels);
      if (!same) {
        const number = (f?.number ?? 0) + 1;
        this.frame = { number, message: frameMessage(number, s.width, s.height, s.pixels) };
      }
      this.display = { state: 'up', width: s.width, height: s.height, frames: this.frame?.number ?? 0 };
      this.lastError = '';
      for (const c of this.clients) this.sendFrame(c);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      this.display = { state: 'error', error };
      if (error !== this.lastError) this.log.warn('dashboard: no screendump from QEMU', { error });
      this.lastError = error;
    } finally {
      this.grabbing = false;
    }
  }

  private sendFrame(c: Client): void {
    const f = this.frame;
    if (f === null || c.frame === f.number || c.ws.bufferedAmount > SLOW_CLIENT_BYTES) return;
    c.ws.send(f.message);
    c.frame = f.number;
  }
}
