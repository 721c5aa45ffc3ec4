// What a running gateway leaves in its run directory, so that `status` and
// `stop` can find it from another process: a state file per model socket
// (JSON: pids, sockets, QEMU, dashboard) and a control socket that answers
// one JSON status report per connection. A state file whose process is gone
// (killed, crashed) is stale: readers detect it and remove it.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { PciemError } from './errors.js';

export const STATE_VERSION = 1;

/** `$XDG_RUNTIME_DIR/pciem-gateway` when that is set (a user's session), else /run/pciem-gateway. */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, 'pciem-gateway') : '/run/pciem-gateway';
}

export interface GatewayState {
  version: number;
  pid: number;
  /** The process's start time in clock ticks (/proc/PID/stat): tells a reused pid apart. */
  procStart: string | null;
  startedAt: string;
  /** The model socket this gateway serves. */
  socket: string;
  /** Its control socket (status reports). */
  control: string;
  /** The description file, if one was given. */
  device: string | null;
  qemu: {
    mode: 'launched' | 'attached' | 'none';
    pid: number | null;
    binary: string | null;
    /** QMP: a UNIX socket path or host:port. */
    qmp: string | null;
    vnc: string | null;
  };
  /** The dashboard's URL, with its access token. */
  dashboard: string | null;
}

/** One card session in a status report. */
export interface SessionReport {
  model: string;
  device: string;
  state: string;
  /** Where the host put the card. */
  address: string | null;
  counters: Record<string, number>;
}

export interface StatusReport {
  pid: number;
  socket: string;
  startedAt: string;
  uptimeSec: number;
  qemu: GatewayState['qemu'] & {
    /** QEMU's run state from QMP (running, paused...), or why there is none. */
    status: string;
    restarts: number;
    lastExit: string | null;
  };
  dashboard: string | null;
  sessions: SessionReport[];
}

export interface StatePaths {
  /** The name the files share: the socket's name and a hash of its full path. */
  id: string;
  state: string;
  control: string;
  /** Where a launched QEMU serves QMP. */
  qmp: string;
}

/** The run-directory files of the gateway serving `socket`. */
export function statePaths(runDir: string, socket: string): StatePaths {
  const full = resolve(socket);
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  const id = `${basename(full).replace(/[^A-Za-z0-9._-]/g, '_')}-${hash}`;
  return { id, state: join(runDir, `${id}.json`), control: join(runDir, `${id}.ctl`), qmp: join(runDir, `${id}.qmp`) };
}

/** Fields 3.. of /proc/PID/stat (state, ppid, ...), or null if there is no such process. */
function procStat(pid: number): string[] | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count after its last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The start time of process `pid` in clock ticks since boot (field 22), or null if it does not exist. */
export function processStart(pid: number): string | null {
  return procStat(pid)?.[19] ?? null;
}

/**
 * Whether the process a state file names is still that gateway: not gone,
 * not a zombie waiting for its parent, not a reused pid.
 */
export function isAlive(s: Pick<GatewayState, 'pid' | 'procStart'>): boolean {
  try {
    process.kill(s.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(s.pid);
  if (stat === null) return false;
  if (stat[0] === 'Z' || stat[0] === 'X') return false;
  return s.procStart === null || stat[19] === s.procStart;
}

export function ensureRunDir(runDir: string): void {
  try {
    mkdirSync(runDir, { recursive: true, mode: 0o755 });
  } catch (e) {
    throw new PciemError('PCIEM_ERR_IO', `--run-dir ${runDir}: cannot create it: ${(e as Error).message}`);
  }
}

/** Writes a state file whole (readers never see half of one); only its owner reads it (the dashboard URL carries its token). */
export function writeState(path: string, s: GatewayState): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

function isState(v: unknown): v is GatewayState {
  const o = v as Partial<GatewayState> | null;
  return typeof o === 'object' && o !== null && o.version === STATE_VERSION && Number.isInteger(o.pid) && typeof o.socket === 'string' &&
    typeof o.control === 'string' && typeof o.qemu === 'object' && o.qemu !== null;
}

export interface FoundState {
  path: string;
  state: GatewayState;
}

/** Reads one state file; null if there is none; a file that is not one is named in the error. */
export function readState(path: string): GatewayState | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PciemError('PCIEM_ERR_IO', `${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (!isState(json)) throw new PciemError('PCIEM_ERR_INVALID', `${path}: not a pciem-gateway state file (version ${STATE_VERSION})`);
  return json;
}

/** Every state file in the run directory (none if it does not exist). Unreadable ones are returned as `bad`. */
export function listStates(runDir: string): { found: FoundState[]; bad: { path: string; error: string }[] } {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { found: [], bad: [] };
    throw new PciemError('PCIEM_ERR_IO', `--run-dir ${runDir}: ${(e as Error).message}`);
  }
  const found: FoundState[] = [];
  const bad: { path: string; error: string }[] = [];
  for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
    const path = join(runDir, n);
    try {
      const state = readState(path);
      if (state) found.push({ path, state });
    } catch (e) {
      bad.push({ path, error: (e as Error).message });
    }
  }
  return { found, bad };
}

function unlinkQuiet(path: string | null): void {
  if (path === null) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Removes a gateway's run-directory files: its state file, control socket and (launched) QMP socket. */
export function removeState(statePath: string, s: GatewayState | null): void {
  unlinkQuiet(statePath);
  if (!s) return;
  unlinkQuiet(s.control);
  if (s.qemu.mode === 'launched' && s.qemu.qmp !== null && s.qemu.qmp.startsWith('/')) unlinkQuiet(s.qemu.qmp);
}

/** The control socket: each connection gets one JSON status report and is closed. */
export class ControlServer {
  private server: Server | null = null;

  constructor(private readonly report: () => Promise<StatusReport>) {}

  async listen(path: string): Promise<void> {
    unlinkQuiet(path);
    const server = createServer((sock) => {
      sock.on('error', () => undefined);
      this.report().then(
        (r) => sock.end(`${JSON.stringify(r)}\n`),
        (e: unknown) => sock.end(`${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`),
      );
    });
    await new Promise<void>((res, rej) => {
      server.once('error', (e) => rej(new PciemError('PCIEM_ERR_IO', `control socket ${path}: ${e.message}`)));
      server.listen(path, () => res());
    });
    // Reports name sockets and pids: for whoever runs the gateway (root), not every local user.
    chmodSync(path, 0o600);
    server.on('error', () => undefined);
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((res) => s.close(() => res()));
  }
}

/** Asks a gateway's control socket for its status report. */
export function queryControl(path: string, timeoutMs = 3000): Promise<StatusReport> {
  return new Promise((res, rej) => {
    const sock = connect(path);
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      rej(new PciemError('PCIEM_ERR_TIMEOUT', `control socket ${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (s: string) => (text += s));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      rej(new PciemError('PCIEM_ERR_IO', `control socket ${path}: ${e.message}`, e.code));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(text) as StatusReport | { error: string };
        if ('error' in r) rej(new PciemError('PCIEM_ERR_IO', `the gateway could not report: ${r.error}`));
        else res(r);
      } catch {
        rej(new PciemError('PCIEM_ERR_IO', `control socket ${path}: not a status report`));
      }
    });
  });
}
