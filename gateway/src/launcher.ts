// Runs the QEMU that hosts a card's model, for the gateway: spawns it
// (its stdout and stderr become log records), connects QMP, notices when it
// dies and, if asked, starts it again with a growing delay, giving up after
// a run of fast failures. Stopping asks QEMU to quit over QMP and kills it
// after a grace period. QEMU gets SIGKILL if the gateway itself dies
// (setpriv --pdeathsig), so no model outlives the gateway it served.
//
// attachQmp() is the other way to have a QEMU: the user started it, the
// gateway only keeps a QMP connection to it (reconnecting if it goes away).
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { PciemError } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { Qmp, type QmpEndpoint } from './qmp.js';

export interface LauncherOptions {
  /** The qemu-system-x86_64 binary. */
  binary: string;
  /** Its arguments (modelArgs()), QMP on `qmpPath` included. */
  args: string[];
  /** The UNIX socket QEMU serves QMP on (removed before each start: a killed QEMU leaves it behind). */
  qmpPath: string;
  log?: Logger;
  /** Start QEMU again when it dies (default false: its death is final). */
  restart?: boolean;
  /** Restarts in a row, each of a QEMU that died within fastRunMs, before giving up (default 5). */
  maxFastFailures?: number;
  /** A run shorter than this counts as a fast failure (default 10 s). */
  fastRunMs?: number;
  /** Delay before the first restart; doubles with each fast failure up to maxBackoffMs (default 500 ms, 8 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** How long QEMU has to quit when asked before it is killed (default 5 s). */
  graceMs?: number;
  /** How long a starting QEMU has to answer on QMP (default 30 s). */
  qmpTimeoutMs?: number;
}

export type LauncherState = 'idle' | 'starting' | 'running' | 'waiting' | 'stopping' | 'stopped' | 'failed';

export interface QemuExit {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** How long it ran. */
  ranMs: number;
  /** "exit status 1", "killed by SIGKILL". */
  how: string;
}

export interface LauncherEvents {
  /** A QEMU process was started. */
  spawn: [pid: number];
  /** A QEMU ended (asked to or not). */
  exit: [e: QemuExit];
  /** QEMU is gone for good (died with restarts off, or too many fast failures): the reason. */
  failed: [reason: string];
}

/** The QEMU binary `make qemu` builds, from qemu-plugin/build.sh's cache layout (not built here). */
export function defaultQemuBinary(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.PCIEM_CACHE ?? `${env.XDG_CACHE_HOME ?? `${env.HOME ?? '/root'}/.cache`}/pciem-gateway`;
  let version = '';
  try {
    // "VERSION TARBALL", written by build.sh.
    version = readFirstWord(`${cache}/qemu/current`);
  } catch {
    // not built: the path below does not exist and checkBinary says what to do
  }
  return `${cache}/qemu/build-${version || 'VERSION'}/qemu-system-x86_64`;
}

function readFirstWord(path: string): string {
  // Small and read once at start: synchronous is fine.
  return readFileSync(path, 'utf8').trim().split(/\s+/)[0] ?? '';
}

/** Throws a PciemError naming `flag` if `binary` is not an executable file. */
export function checkBinary(binary: string, flag: string, hint: string): void {
  let why: string | null = null;
  if (!existsSync(binary)) why = 'no such file';
  else if (!statSync(binary).isFile()) why = 'not a file';
  else {
    try {
      accessSync(binary, constants.X_OK);
    } catch {
      why = 'not executable';
    }
  }
  if (why !== null) throw new PciemError('PCIEM_ERR_INVALID', `${flag} ${binary}: ${why}${hint ? ` (${hint})` : ''}`);
}

const SETPRIV = '/usr/bin/setpriv';

/** Lines of a stream, as they complete. */
function eachLine(stream: NodeJS.ReadableStream, f: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (s: string) => {
    buf += s;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      f(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    if (buf.length > 4096) {
      f(buf);
      buf = '';
    }
  });
  stream.on('end', () => {
    if (buf) f(buf);
  });
}

export class QemuLauncher extends EventEmitter<LauncherEvents> {
  state: LauncherState = 'idle';
  /** The running QEMU's pid (from its start), its QMP connection (once it answers); null between runs. */
  pid: number | null = null;
  qmp: Qmp | null = null;
  restarts = 0;
  lastExit: QemuExit | null = null;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private fastFailures = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Aborts the QMP connection attempt of the QEMU being started. */
  private connecting: AbortController | null = null;
  private readonly tail: string[] = [];
  private readonly log: Logger;

  constructor(private readonly opts: LauncherOptions) {
    super();
    this.log = (opts.log ?? silentLogger).child({ component: 'qemu' });
  }

  /**
   * Starts QEMU; resolves once it answers on QMP. A QEMU that does not come
   * up at all is an error (with what it printed), restarts or not: that is
   * a configuration to fix, not a crash to ride out.
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new PciemError('PCIEM_ERR_BUSY', `QEMU launcher: start() when ${this.state}`);
    await this.launch();
  }

  private async launch(): Promise<void> {
    this.state = 'starting';
    this.tail.length = 0;
    const { binary, args, qmpPath } = this.opts;
    try {
      unlinkSync(qmpPath);
    } catch {
      // none left behind
    }
    const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args]] : [binary, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const started = Date.now();
    this.child = child;
    let exitInfo: QemuExit | null = null;
    this.exited = new Promise<void>((res) => {
      child.once('exit', (code, signal) => {
        const pid = child.pid ?? 0;
        exitInfo = { pid, code, signal, ranMs: Date.now() - started, how: signal !== null ? `killed by ${signal}` : `exit status ${String(code)}` };
        res();
        this.onExit(child, exitInfo);
      });
    });
    const spawnError = new Promise<never>((_, rej) => {
      child.once('error', (e) => rej(new PciemError('PCIEM_ERR_IO', `starting QEMU ${binary}: ${e.message}`)));
    });
    const pid = child.pid ?? 0;
    this.pid = child.pid ?? null;
    const log = this.log.child({ pid });
    const keep = (line: string): void => {
      this.tail.push(line);
      if (this.tail.length > 20) this.tail.shift();
    };
    eachLine(child.stdout, (line) => {
      keep(line);
      log.info('qemu stdout', { line });
    });
    eachLine(child.stderr, (line) => {
      keep(line);
      // QEMU prefixes what is only information ("qemu-system-x86_64: info: ..."); the rest is a warning or worse.
      if (/^[^:]*: info: /.test(line)) log.info('qemu stderr', { line });
      else log.warn('qemu stderr', { line });
    });
    log.info('QEMU started', { binary, restarts: this.restarts });
    if (child.pid !== undefined) this.emit('spawn', child.pid);
    // No QMP retry outlives this QEMU (or lands on the next one at the same path).
    const connecting = new AbortController();
    this.connecting = connecting;
    void this.exited.then(() => connecting.abort());
    const died = this.exited.then(() => {
      throw new PciemError('PCIEM_ERR_IO', `QEMU ${exitInfo?.how ?? 'exited'} before it answered on QMP${this.tail.length ? `; it said: ${this.tail.join(' | ')}` : ''}`);
    });
    let qmp: Qmp;
    try {
      qmp = await Promise.race([this.connectQmp(child, connecting.signal), died, spawnError]);
    } catch (e) {
      if (this.child === child) child.kill('SIGKILL');
      throw e;
    }
    if (this.child !== child) {
      // Stopped or died meanwhile: this connection is of no use.
      qmp.close();
      throw new PciemError('PCIEM_ERR_QMP_CLOSED', 'QEMU went away while QMP connected');
    }
    this.qmp = qmp;
    this.state = 'running';
    log.info('QEMU answering on QMP', { version: `${qmp.greeting.version.qemu.major}.${qmp.greeting.version.qemu.minor}.${qmp.greeting.version.qemu.micro}` });
  }

  /**
   * QMP once QEMU's socket is there (QEMU makes it early, before the model
   * connects): waiting for the file first means no connection attempt
   * outlives this QEMU and lands on the next one.
   */
  private async connectQmp(child: ChildProcess, signal: AbortSignal): Promise<Qmp> {
    const timeoutMs = this.opts.qmpTimeoutMs ?? 30_000;
    const end = Date.now() + timeoutMs;
    while (!existsSync(this.opts.qmpPath)) {
      if (this.child !== child || signal.aborted) throw new PciemError('PCIEM_ERR_QMP_CLOSED', 'QEMU went away before its QMP socket appeared');
      if (Date.now() > end) throw new PciemError('PCIEM_ERR_TIMEOUT', `QEMU made no QMP socket ${this.opts.qmpPath} within ${timeoutMs} ms`);
      await sleep(50);
    }
    const qmp = await Qmp.connect({ path: this.opts.qmpPath }, { timeoutMs: Math.max(1000, end - Date.now()), log: this.log, signal });
    if (this.child !== child) qmp.close();
    return qmp;
  }

  private onExit(child: ChildProcess, e: QemuExit): void {
    if (this.child !== child) return;
    this.child = null;
    this.pid = null;
    this.qmp?.close();
    this.qmp = null;
    this.lastExit = e;
    const wasStarting = this.state === 'starting';
    this.emit('exit', e);
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.log.info('QEMU exited', { pid: e.pid, how: e.how });
      return;
    }
    this.log.error('QEMU died', { pid: e.pid, how: e.how, ran_ms: e.ranMs, last_words: this.tail.slice(-3).join(' | ') || undefined });
    if (wasStarting && this.restarts === 0) return; // start() reports it
    if (!this.opts.restart) {
      this.fail(`QEMU ${e.how} (restarts are off: --restart-qemu)`);
      return;
    }
    const fast = e.ranMs < (this.opts.fastRunMs ?? 10_000);
    this.fastFailures = fast ? this.fastFailures + 1 : 0;
    const max = this.opts.maxFastFailures ?? 5;
    if (this.fastFailures > max) {
      this.fail(`QEMU died within ${this.opts.fastRunMs ?? 10_000} ms of starting ${this.fastFailures} times in a row; giving up`);
      return;
    }
    const base = this.opts.backoffMs ?? 500;
    const delay = Math.min(base * 2 ** Math.max(0, this.fastFailures - 1), this.opts.maxBackoffMs ?? 8000);
    this.state = 'waiting';
    this.log.warn('restarting QEMU', { in_ms: delay, restart: this.restarts + 1, fast_failures: this.fastFailures });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.restarts++;
      this.launch().catch((err: unknown) => {
        // Its exit (if it died) is counted by onExit; a QEMU that lives but never answers is killed, and so counted.
        this.log.warn('the restarted QEMU did not come up', { error: err instanceof Error ? err.message : String(err) });
      });
    }, delay);
  }

  private fail(reason: string): void {
    this.state = 'failed';
    this.log.error('QEMU is gone for good', { reason });
    this.emit('failed', reason);
  }

  /** Asks QEMU to quit (QMP), kills it after the grace period; no restarts from now on. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.connecting?.abort();
    const child = this.child;
    this.state = 'stopping';
    if (child) {
      const grace = this.opts.graceMs ?? 5000;
      const exited = this.exited;
      const qmp = this.qmp;
      if (qmp) {
        await qmp.quit({ timeoutMs: grace }).catch((e: unknown) => {
          this.log.warn('QEMU did not quit when asked', { error: e instanceof Error ? e.message : String(e) });
        });
      }
      const inTime = await Promise.race([exited.then(() => true), sleep(qmp ? Math.min(grace, 1000) : 0).then(() => false)]);
      if (!inTime && this.child === child) {
        this.log.warn('killing QEMU', { pid: child.pid, after_ms: grace });
        child.kill('SIGKILL');
        await exited;
      }
    }
    this.qmp?.close();
    this.qmp = null;
    this.state = 'stopped';
  }
}

/** Parses `--attach-qmp`: a UNIX socket path, or HOST:PORT. */
export function parseQmpEndpoint(s: string): QmpEndpoint | null {
  const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})$/.exec(s);
  if (m && !s.includes('/')) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) return null;
    return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port };
  }
  return s.length > 0 && !s.includes('\0') ? { path: s } : null;
}

/**
 * A QMP connection to a QEMU the user started: made when QEMU is there and
 * kept while the gateway runs (reconnected if QEMU goes away and comes back).
 */
export class QmpAttachment {
  qmp: Qmp | null = null;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly ep: QmpEndpoint, log: Logger = silentLogger) {
    this.log = log.child({ component: 'qmp' });
  }

  /**
   * Starts connecting, in the background: the user's QEMU may well start
   * after the gateway (its bridge connects to the gateway's socket).
   */
  start(): void {
    void this.reconnect();
  }

  private adopt(qmp: Qmp): void {
    this.qmp = qmp;
    this.log.info('attached to QEMU over QMP', { qemu: `${qmp.greeting.version.qemu.major}.${qmp.greeting.version.qemu.minor}.${qmp.greeting.version.qemu.micro}` });
    qmp.once('close', (reason) => {
      if (this.qmp === qmp) this.qmp = null;
      if (this.stopped) return;
      this.log.warn("the attached QEMU's QMP connection closed; reconnecting", { reason: reason.message });
      this.start();
    });
  }

  private async reconnect(): Promise<void> {
    let said = false;
    while (!this.stopped) {
      try {
        const q = await Qmp.connect(this.ep, { timeoutMs: 5000, log: this.log });
        if (this.stopped) {
          q.close();
          return;
        }
        this.adopt(q);
        return;
      } catch (e) {
        if (!said) this.log.warn('no QMP from the attached QEMU yet; retrying every second', { qmp: 'path' in this.ep ? this.ep.path : `${this.ep.host}:${this.ep.port}`, error: (e as Error).message });
        said = true;
        await sleep(1000);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.qmp?.close();
    this.qmp = null;
  }
}
