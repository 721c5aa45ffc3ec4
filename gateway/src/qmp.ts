// The gateway's QMP client (QEMU's docs/interop/qmp-spec.rst) over a UNIX or
// TCP socket: one JSON object per line; the server greets first, the
// client answers with qmp_capabilities, then commands carry an "id" that
// their reply echoes, and asynchronous events arrive in between.
//
//   const qmp = await Qmp.connect({ path: '/run/qemu-qmp.sock' }, { timeoutMs: 10_000 });
//   qmp.on('event', (e) => log.info('qemu event', { event: e.event }));
//   const { running } = await qmp.queryStatus();
//   await qmp.quit();
//
// Every failure is a PciemError: PCIEM_ERR_QMP (QEMU refused the command),
// PCIEM_ERR_TIMEOUT, PCIEM_ERR_QMP_CLOSED (the connection went away: every
// pending command is rejected at once), PCIEM_ERR_QMP_MALFORMED (the peer
// is not speaking QMP: the connection is dropped).
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSysError, PciemError } from './errors.js';
import { silentLogger, type Logger } from './log.js';

export type QmpEndpoint = { path: string } | { host: string; port: number };

export interface QmpOptions {
  /** Connect, greeting and negotiation together (default 10 s). */
  timeoutMs?: number;
  /** Default for each command (default 30 s; Infinity for none). */
  commandTimeoutMs?: number;
  /** Longest line accepted from the peer, in characters (default 16 Mi: query-qmp-schema is large). */
  maxLineLength?: number;
  log?: Logger;
  /**
   * Abandons connect() (its retries and its handshake): it rejects with
   * PCIEM_ERR_QMP_CLOSED at once. For a caller whose QEMU is gone, so no
   * retry outlives it (and none reaches the next QEMU on the same path).
   */
  signal?: AbortSignal;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpStatus {
  running: boolean;
  /** RunState, e.g. running, paused, inmigrate, shutdown, internal-error. */
  status: string;
}

export interface ScreenPixels {
  width: number;
  height: number;
  /** RGB888, row by row, no padding. */
  pixels: Buffer;
}

export interface PciRegion {
  bar: number;
  type: 'io' | 'memory';
  address: number;
  size: number;
  prefetch?: boolean;
  mem_type_64?: boolean;
}

export interface PciDeviceInfo {
  bus: number;
  slot: number;
  function: number;
  class_info: { class: number; desc?: string };
  id: { vendor: number; device: number; subsystem?: number; 'subsystem-vendor'?: number };
  irq?: number;
  irq_pin?: number;
  qdev_id: string;
  regions: PciRegion[];
  pci_bridge?: { bus: { number: number; secondary: number; subordinate: number }; devices?: PciDeviceInfo[] };
}

export interface PciBusInfo {
  bus: number;
  devices: PciDeviceInfo[];
}

export interface CommandOptions {
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (e: PciemError) => void;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULTS = { timeoutMs: 10_000, commandTimeoutMs: 30_000, maxLineLength: 16 << 20 };

function describe(ep: QmpEndpoint): string {
  return 'path' in ep ? ep.path : `${ep.host}:${ep.port}`;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A timer that rejects `reject` with PCIEM_ERR_TIMEOUT, or none for an infinite time. */
function deadline(ms: number, what: string, reject: (e: PciemError) => void): NodeJS.Timeout | undefined {
  if (!Number.isFinite(ms)) return undefined;
  return setTimeout(() => reject(new PciemError('PCIEM_ERR_TIMEOUT', `${what}: no answer within ${ms} ms`)), Math.max(0, ms));
}

/** The events a Qmp emits: each QMP event; once, `close` with why the connection is gone. */
export interface QmpEvents {
  event: [e: QmpEvent];
  close: [reason: PciemError];
}

export class Qmp extends EventEmitter<QmpEvents> {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private greeted: ((g: QmpGreeting) => void) | null = null;
  private greetingValue: QmpGreeting | null = null;
  private closeReason: PciemError | null = null;
  private readonly gone: Promise<void>;
  private readonly commandTimeoutMs: number;
  private readonly maxLineLength: number;
  private readonly log: Logger;

  private constructor(
    private readonly sock: Socket,
    private readonly where: string,
    opts: QmpOptions,
  ) {
    super();
    this.commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULTS.commandTimeoutMs;
    this.maxLineLength = opts.maxLineLength ?? DEFAULTS.maxLineLength;
    this.log = (opts.log ?? silentLogger).child({ qmp: where });
    this.gone = new Promise((resolve) => sock.once('close', () => resolve()));
    sock.setEncoding('utf8');
    sock.on('data', (s: string) => this.onData(s));
    sock.on('error', (e: NodeJS.ErrnoException) =>
      this.shut(new PciemError('PCIEM_ERR_QMP_CLOSED', `QMP ${where}: ${e.message}`, e.code)),
    );
    sock.on('close', () => this.shut(new PciemError('PCIEM_ERR_QMP_CLOSED', `QMP ${where}: connection closed by QEMU`)));
  }

  /**
   * Connects, waits for the greeting and negotiates capabilities. Retries
   * while the socket does not exist yet or refuses (QEMU still starting),
   * up to `timeoutMs`.
   */
  static async connect(ep: QmpEndpoint, opts: QmpOptions = {}): Promise<Qmp> {
    const where = describe(ep);
    const timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
    const end = Date.now() + timeoutMs;
    const timedOut = (what: string): PciemError => new PciemError('PCIEM_ERR_TIMEOUT', `QMP ${where}: ${what} within ${timeoutMs} ms`);
    const abandoned = (): PciemError => new PciemError('PCIEM_ERR_QMP_CLOSED', `QMP ${where}: connect abandoned`);
    let sock: Socket;
    for (;;) {
      if (opts.signal?.aborted) throw abandoned();
      try {
        sock = await new Promise<Socket>((resolve, reject) => {
          const s = 'path' in ep ? netConnect(ep.path) : netConnect(ep.port, ep.host);
          const timer = deadline(end - Date.now(), `QMP ${where}: connect`, (e) => {
            s.destroy();
            reject(e);
          });
          s.once('connect', () => {
            clearTimeout(timer);
            s.removeAllListeners('error');
            resolve(s);
          });
          s.once('error', (e) => {
            clearTimeout(timer);
            reject(e);
          });
        });
        break;
      } catch (e) {
        if (e instanceof PciemError) throw timedOut('no connection');
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw fromSysError(e, `QMP connect to ${where}`);
        if (Date.now() + 50 > end) throw timedOut(`no connection (${code})`);
        await sleep(50, undefined, opts.signal ? { signal: opts.signal } : {}).catch(() => undefined);
      }
    }
    const qmp = new Qmp(sock, where, opts);
    try {
      await qmp.handshake(end - Date.now(), timedOut);
      if (opts.signal?.aborted) throw abandoned();
      return qmp;
    } catch (e) {
      qmp.close();
      throw e;
    }
  }

  private async handshake(ms: number, timedOut: (what: string) => PciemError): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let onClose: ((reason: PciemError) => void) | undefined;
    try {
      await new Promise<QmpGreeting>((resolve, reject) => {
        this.greeted = resolve;
        onClose = reject;
        this.once('close', onClose);
        timer = setTimeout(() => reject(timedOut('no greeting')), Math.max(0, ms));
      });
    } finally {
      clearTimeout(timer);
      if (onClose !== undefined) this.off('close', onClose);
    }
    await this.execute('qmp_capabilities', undefined, { timeoutMs: Math.max(1, ms) });
  }

  /** What QEMU said when it greeted us (its version and capabilities). */
  get greeting(): QmpGreeting {
    if (this.greetingValue === null) throw new PciemError('PCIEM_ERR_BUSY', 'QMP: not connected yet');
    return this.greetingValue;
  }

  /** Whether the connection is gone. */
  get closed(): boolean {
    return this.closeReason !== null;
  }

  /** Runs a command; resolves with its "return", rejects with a coded PciemError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: CommandOptions = {}): Promise<T> {
    if (this.closeReason !== null) {
      return Promise.reject(new PciemError('PCIEM_ERR_QMP_CLOSED', `${command}: ${this.closeReason.message}`));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = deadline(opts.timeoutMs ?? this.commandTimeoutMs, `QMP ${this.where}: ${command}`, (e) => {
        // A late reply is dropped: its id is no longer pending.
        this.pending.delete(id);
        reject(e);
      });
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args !== undefined ? { arguments: args } : {}), id })}\n`);
    });
  }

  async queryStatus(opts?: CommandOptions): Promise<QmpStatus> {
    const r = await this.execute<{ running: boolean; status: string }>('query-status', undefined, opts);
    return { running: r.running, status: r.status };
  }

  /** Writes the display of `device` (default: the first console) to `file` on QEMU's side. */
  async screendump(file: string, how: { device?: string; head?: number; format?: 'ppm' | 'png' } = {}, opts?: CommandOptions): Promise<void> {
    await this.execute('screendump', { filename: file, format: how.format ?? 'ppm', ...(how.device !== undefined ? { device: how.device } : {}), ...(how.head !== undefined ? { head: how.head } : {}) }, opts);
  }

  /**
   * The display's pixels now: a PPM screendump into `file` (QEMU and this
   * process must share it), read back; RGB888, row by row.
   */
  async screenPixels(file: string, how: { device?: string; head?: number } = {}, opts?: CommandOptions): Promise<ScreenPixels> {
    await this.screendump(file, { ...how, format: 'ppm' }, opts);
    const ppm = await readFile(file);
    const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(ppm.subarray(0, 32).toString('latin1'));
    const width = Number(m?.[1]);
    const height = Number(m?.[2]);
    if (!m || ppm.length - m[0].length !== width * height * 3) {
      throw new PciemError('PCIEM_ERR_IO', `screendump ${file}: not a binary PPM of the size its header says`);
    }
    return { width, height, pixels: ppm.subarray(m[0].length) };
  }

  /** Every PCI bus QEMU has, with its devices, BARs and IDs. */
  queryPci(opts?: CommandOptions): Promise<PciBusInfo[]> {
    return this.execute<PciBusInfo[]>('query-pci', undefined, opts);
  }

  /** A QOM property, e.g. qomGet('/machine/peripheral/card0', 'type'). */
  qomGet<T = unknown>(path: string, property: string, opts?: CommandOptions): Promise<T> {
    return this.execute<T>('qom-get', { path, property }, opts);
  }

  /**
   * Asks QEMU to quit; resolves once QEMU has closed the connection (it is
   * exiting). QEMU may close before its reply arrives: that is success too.
   */
  async quit(opts: CommandOptions = {}): Promise<void> {
    const ms = opts.timeoutMs ?? this.commandTimeoutMs;
    try {
      await this.execute('quit', undefined, { timeoutMs: ms });
    } catch (e) {
      if (!(e instanceof PciemError) || e.code !== 'PCIEM_ERR_QMP_CLOSED') throw e;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.gone, new Promise<never>((_, reject) => (timer = deadline(ms, `QMP ${this.where}: quit (waiting for QEMU to close)`, reject)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The next event called `name` (that `match` accepts); call it before the
   * action that causes the event: events that came before are not kept.
   */
  waitEvent(name: string, timeoutMs: number, match: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise<QmpEvent>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      const onEvent = (e: QmpEvent): void => {
        if (e.event !== name || !match(e)) return;
        done();
        resolve(e);
      };
      const onClose = (reason: PciemError): void => {
        done();
        reject(new PciemError('PCIEM_ERR_QMP_CLOSED', `waiting for ${name}: ${reason.message}`));
      };
      const timer = deadline(timeoutMs, `QMP ${this.where}: event ${name}`, (e) => {
        done();
        reject(e);
      });
      if (this.closeReason !== null) return onClose(this.closeReason);
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  /** Drops the connection; pending commands reject with PCIEM_ERR_QMP_CLOSED. */
  close(): void {
    this.shut(new PciemError('PCIEM_ERR_QMP_CLOSED', `QMP ${this.where}: closed by the gateway`));
  }

  private shut(reason: PciemError): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    this.sock.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(reason.code === 'PCIEM_ERR_QMP_CLOSED' ? new PciemError(reason.code, `${p.command}: ${reason.message}`, reason.errno) : reason);
    }
    this.pending.clear();
    this.emit('close', reason);
  }

  /** The peer is not speaking QMP: log why, drop the connection. */
  private refuse(why: string): void {
    this.log.warn('QMP peer sent garbage; dropping the connection', { reason: why });
    this.shut(new PciemError('PCIEM_ERR_QMP_MALFORMED', `QMP ${this.where}: ${why}`));
  }

  private onData(s: string): void {
    if (this.closeReason !== null) return;
    // Search only the new text: a long line arriving in many chunks stays linear.
    let from = this.buf.length;
    this.buf += s;
    let nl: number;
    while ((nl = this.buf.indexOf('\n', from)) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      from = 0;
      if (line.length > this.maxLineLength) return this.refuse(`a line of ${line.length} characters (limit ${this.maxLineLength})`);
      if (line.trim() !== '') this.onLine(line);
      if (this.closeReason !== null) return;
    }
    if (this.buf.length > this.maxLineLength) this.refuse(`more than ${this.maxLineLength} characters without a newline`);
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return this.refuse(`not JSON: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (!isObject(msg)) return this.refuse(`not a JSON object: ${JSON.stringify(line.slice(0, 80))}`);
    if (this.greetingValue === null) {
      const g = msg.QMP;
      if (!isObject(g) || !isObject(g.version) || !Array.isArray(g.capabilities)) return this.refuse('the first message is not a QMP greeting');
      this.greetingValue = g as unknown as QmpGreeting;
      this.greeted?.(this.greetingValue);
      this.greeted = null;
      return;
    }
    if (typeof msg.event === 'string') {
      const e: QmpEvent = { event: msg.event };
      if (isObject(msg.data)) e.data = msg.data;
      if (isObject(msg.timestamp)) e.timestamp = msg.timestamp as { seconds: number; microseconds: number };
      this.emit('event', e);
      return;
    }
    const hasReturn = 'return' in msg;
    const error = msg.error;
    if (!hasReturn && error === undefined) return this.refuse(`neither a reply nor an event: ${JSON.stringify(line.slice(0, 80))}`);
    if (error !== undefined && (!isObject(error) || typeof error.class !== 'string' || typeof error.desc !== 'string')) {
      return this.refuse(`an error reply without class and desc: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (typeof msg.id !== 'number') {
      // QEMU omits the id only when it could not parse the command; ours are well-formed.
      this.log.warn('QMP reply without an id', { line: line.slice(0, 200) });
      return;
    }
    const p = this.pending.get(msg.id);
    if (p === undefined) {
      this.log.debug('QMP reply to no pending command (timed out?)', { id: msg.id });
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (isObject(error)) p.reject(new PciemError('PCIEM_ERR_QMP', `${p.command}: ${String(error.class)}: ${String(error.desc)}`));
    else p.resolve(msg.return);
  }
}
