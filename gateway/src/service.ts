// The running gateway as one unit: the model socket (GatewayServer), the
// QEMU it launched or attached to, its state file and control socket in the
// run directory; started in that order, stopped in reverse — the cards
// leave the host first, then QEMU is asked to quit (killed after a grace
// period), then the sockets and the state file are removed.
//
// `pciem-gateway start` is serve() on the /dev/pciem backend; tests run it
// on the FakeBackend.
import { resolve } from 'node:path';
import { PciemError } from './errors.js';
import type { Description } from './description.js';
import { QemuLauncher, QmpAttachment, type LauncherOptions } from './launcher.js';
import type { Logger } from './log.js';
import { modelArgs } from './qemu.js';
import type { Qmp, QmpEndpoint } from './qmp.js';
import type { HostBackend } from './relay/host.js';
import { GatewayServer } from './relay/server.js';
import {
  ControlServer, STATE_VERSION, ensureRunDir, isAlive, processStart, readState, removeState, statePaths, writeState,
  type GatewayState, type StatePaths, type StatusReport,
} from './state.js';

export interface LaunchConfig extends Omit<LauncherOptions, 'args' | 'qmpPath' | 'log'> {
  /** A VNC display for the card's screen (QEMU's -vnc HOST:N). */
  vnc?: string;
}

export interface ServiceOptions {
  backend: HostBackend;
  log: Logger;
  socket: string;
  runDir: string;
  /** The name the gateway gives itself in HELLO. */
  name?: string;
  requestTimeoutMs?: number;
  description?: Description;
  /** Launch QEMU with the description's model (needs its "qemu" section). */
  launch?: LaunchConfig;
  /** Or keep QMP to a QEMU the user started. */
  attachQmp?: QmpEndpoint;
}

export class GatewayService {
  readonly server: GatewayServer;
  readonly launcher: QemuLauncher | null = null;
  readonly attachment: QmpAttachment | null = null;
  readonly paths: StatePaths;
  private readonly control: ControlServer;
  private state: GatewayState | null = null;
  private readonly started = Date.now();
  private stopped = false;
  private readonly log: Logger;
  /** Resolves when the gateway must end by itself (QEMU gone for good): why. */
  readonly failed: Promise<string>;

  constructor(private readonly opts: ServiceOptions) {
    this.log = opts.log;
    this.paths = statePaths(opts.runDir, opts.socket);
    this.server = new GatewayServer({
      backend: opts.backend, log: opts.log, name: opts.name ?? 'pciem-gateway',
      ...(opts.description ? { description: opts.description } : {}),
      ...(opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
    });
    let fail: (why: string) => void = () => undefined;
    this.failed = new Promise((res) => (fail = res));
    if (opts.launch) {
      const desc = opts.description;
      if (!desc?.qemu) throw new PciemError('PCIEM_ERR_INVALID', 'launching QEMU needs a device description with a "qemu" section (--device)');
      const { vnc, ...launch } = opts.launch;
      const args = modelArgs(desc, { socket: resolve(opts.socket), qmp: this.paths.qmp, ...(vnc !== undefined ? { extra: ['-vnc', vnc] } : {}) });
      const launcher = new QemuLauncher({ ...launch, args, qmpPath: this.paths.qmp, log: opts.log });
      launcher.on('spawn', (pid) => this.updateState({ pid }));
      launcher.on('exit', () => this.updateState({ pid: null }));
      launcher.on('failed', (why) => fail(why));
      this.launcher = launcher;
    } else if (opts.attachQmp) {
      this.attachment = new QmpAttachment(opts.attachQmp, opts.log);
    }
    this.control = new ControlServer(() => this.report());
  }

  /** The QMP connection to the card's QEMU, if there is one now. */
  qmp(): Qmp | null {
    return this.launcher?.qmp ?? this.attachment?.qmp ?? null;
  }

  /**
   * Claims the run-directory files (refusing if a live gateway holds them,
   * cleaning them if it is dead), listens, then launches or attaches.
   */
  async start(): Promise<void> {
    const { runDir, socket } = this.opts;
    ensureRunDir(runDir);
    const old = readState(this.paths.state);
    if (old && isAlive(old)) throw new PciemError('PCIEM_ERR_BUSY', `a gateway (pid ${old.pid}) already serves ${socket}; 'pciem-gateway stop --socket ${socket}' ends it`);
    if (old) {
      this.log.warn('removing the state of a gateway that is gone', { pid: old.pid, state: this.paths.state });
      removeState(this.paths.state, old);
    }
    const attach = this.opts.attachQmp;
    this.state = {
      version: STATE_VERSION, pid: process.pid, procStart: processStart(process.pid), startedAt: new Date(this.started).toISOString(),
      socket: resolve(socket), control: this.paths.control, device: this.opts.description?.source ?? null,
      qemu: {
        mode: this.launcher ? 'launched' : attach ? 'attached' : 'none',
        pid: null,
        binary: this.opts.launch?.binary ?? null,
        qmp: this.launcher ? this.paths.qmp : attach ? ('path' in attach ? attach.path : `${attach.host}:${attach.port}`) : null,
        vnc: this.opts.launch?.vnc ?? null,
      },
      dashboard: null,
    };
    try {
      await this.server.listen(socket);
      await this.control.listen(this.paths.control);
      writeState(this.paths.state, this.state);
      if (this.launcher) await this.launcher.start();
      this.attachment?.start();
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Records the dashboard's address in the state file. */
  setDashboard(url: string | null): void {
    if (this.state) this.state.dashboard = url;
    this.updateState({});
  }

  private updateState(q: { pid?: number | null }): void {
    if (!this.state || this.stopped) return;
    if (q.pid !== undefined) this.state.qemu.pid = q.pid;
    try {
      writeState(this.paths.state, this.state);
    } catch (e) {
      this.log.warn('could not update the state file', { state: this.paths.state, error: (e as Error).message });
    }
  }

  /** What `pciem-gateway status` shows. */
  async report(): Promise<StatusReport> {
    const s = this.state;
    if (!s) throw new PciemError('PCIEM_ERR_BUSY', 'the gateway is not started');
    const qmp = this.qmp();
    let status: string;
    if (qmp) {
      status = await qmp.queryStatus({ timeoutMs: 1000 }).then((r) => r.status, (e: unknown) => `no answer on QMP (${(e as Error).message})`);
    } else if (s.qemu.mode === 'none') status = 'not managed by the gateway';
    else status = this.launcher ? `not running (${this.launcher.state})` : 'QMP not connected';
    return {
      pid: s.pid, socket: s.socket, startedAt: s.startedAt, uptimeSec: Math.round((Date.now() - this.started) / 1000),
      qemu: { ...s.qemu, pid: this.launcher?.pid ?? s.qemu.pid, status, restarts: this.launcher?.restarts ?? 0, lastExit: this.launcher?.lastExit?.how ?? null },
      dashboard: s.dashboard,
      sessions: [...this.server.sessions].map((x) => ({
        model: x.modelName, device: x.deviceName, state: x.state, address: x.host?.address ?? null,
        counters: Object.fromEntries(Object.entries(x.counters).map(([k, v]) => [k, Number(v)])),
      })),
    };
  }

  /** Cards off the host, QEMU quit (or killed), sockets and the state file removed. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const errors: string[] = [];
    const step = async (what: string, f: () => Promise<void> | void): Promise<void> => {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    await step('closing the model socket', () => this.server.close());
    await step('stopping QEMU', () => this.launcher?.stop());
    await step('detaching from QEMU', () => this.attachment?.stop());
    await step('closing the control socket', () => this.control.close());
    // Only what this gateway claimed: a start refused for a live gateway's socket leaves that one's files be.
    if (this.state) removeState(this.paths.state, this.state);
    if (errors.length) this.log.warn('stopping was not clean', { errors: errors.join('; ') });
    this.log.info('gateway stopped', { socket: this.opts.socket });
  }
}

/**
 * Runs the gateway until SIGINT or SIGTERM (exit 0) or until its QEMU is
 * gone for good (exit 1). `onStarted` runs once it is up (the dashboard).
 */
export async function serve(opts: ServiceOptions, onStarted?: (svc: GatewayService) => Promise<(() => Promise<void>) | void>): Promise<number> {
  const svc = new GatewayService(opts);
  let signalled: (sig: string) => void = () => undefined;
  const signal = new Promise<string>((res) => (signalled = res));
  const onInt = (): void => signalled('SIGINT');
  const onTerm = (): void => signalled('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  let cleanup: (() => Promise<void>) | void = undefined;
  try {
    const starting = svc.start();
    const early = await Promise.race([starting.then(() => null), signal]);
    if (early !== null) {
      opts.log.info('stopping', { signal: early });
      await starting.catch(() => undefined);
      await svc.stop();
      return 0;
    }
    if (onStarted) cleanup = await onStarted(svc);
    opts.log.info('gateway running', { socket: opts.socket, state: svc.paths.state });
    const why = await Promise.race([signal.then((s) => ({ signal: s })), svc.failed.then((f) => ({ failed: f }))]);
    if ('signal' in why) opts.log.info('stopping', { signal: why.signal });
    else opts.log.error('stopping: QEMU is gone', { reason: why.failed });
    if (cleanup) await cleanup().catch((e: unknown) => opts.log.warn('closing the dashboard failed', { error: (e as Error).message }));
    await svc.stop();
    return 'signal' in why ? 0 : 1;
  } catch (e) {
    await svc.stop();
    throw e;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
