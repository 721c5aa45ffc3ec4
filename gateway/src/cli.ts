// The `pciem-gateway` command line: start, status, stop. Each subcommand
// has its own --help; a bad flag, value or file is named in the error, with
// a non-zero exit (2: usage, 1: failure, 3: no gateway running).
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadDescription, type Description } from './description.js';
import { PciemError } from './errors.js';
import { checkBinary, defaultQemuBinary, parseQmpEndpoint } from './launcher.js';
import { LEVELS, createLogger, type Level } from './log.js';
import type { QmpEndpoint } from './qmp.js';
import { PciemBackend } from './relay/pciem-host.js';
import { serve, type LaunchConfig } from './service.js';
import {
  defaultRunDir, isAlive, listStates, queryControl, readState, removeState, statePaths, type FoundState, type StatusReport,
} from './state.js';

const PROG = 'pciem-gateway';
export const DEFAULT_SOCKET = '/run/pciem-gateway.sock';
/** `status`: no gateway runs. */
export const EXIT_NOT_RUNNING = 3;

class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  help: string;
  run(values: Values): Promise<number>;
}

const str = (v: Values, k: string): string | undefined => v[k] as string | undefined;

function wholeNumber(v: Values, flag: string, def: number, min: number, max: number, unit: string): number {
  const raw = str(v, flag);
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${flag}: '${raw}' is not a whole number of ${unit} from ${min} to ${max}`);
  return n;
}

/** `--vnc`: QEMU's HOST:DISPLAY; ":N" means 127.0.0.1:N (the display stays on this machine unless a host is named). */
function parseVnc(s: string): string {
  const m = /^([A-Za-z0-9.-]*|\[[0-9A-Fa-f:]+\]):(\d{1,2})$/.exec(s);
  if (!m) throw new UsageError(`--vnc: '${s}' is not HOST:DISPLAY or :DISPLAY (display 0-99, port 5900+DISPLAY)`);
  return `${m[1] || '127.0.0.1'}:${m[2] ?? '0'}`;
}

const RUN_DIR_HELP = `  --run-dir DIR          where gateways keep their state files and control
                         sockets (default ${defaultRunDir()}:
                         $XDG_RUNTIME_DIR/pciem-gateway if set, else /run/pciem-gateway)`;
const SOCKET_HELP = '  --socket PATH          only the gateway serving this model socket (default: every gateway)';

const COMMANDS: Record<string, Command> = {
  start: {
    summary: 'put a described card on this host, launch its QEMU model and relay between them',
    usage: `${PROG} start [--device FILE] [--qemu BINARY | --attach-qmp QMP | --no-qemu] [--restart-qemu] [--vnc HOST:N] [--qemu-grace-ms N] [--dashboard PORT] [--socket PATH] [--run-dir DIR] [--pciem PATH] [--read-timeout-ms N] [--log-level LEVEL]`,
    options: {
      socket: { type: 'string' },
      device: { type: 'string' },
      qemu: { type: 'string' },
      'attach-qmp': { type: 'string' },
      'no-qemu': { type: 'boolean' },
      'restart-qemu': { type: 'boolean' },
      vnc: { type: 'string' },
      'qemu-grace-ms': { type: 'string' },
      dashboard: { type: 'string' },
      'run-dir': { type: 'string' },
      pciem: { type: 'string' },
      'read-timeout-ms': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Listens on a UNIX socket for QEMU card models (the pciem-bridge object,
-chardev socket,path=SOCKET); each model that connects describes its card,
which the gateway creates on this host through /dev/pciem (pciem.ko) and
relays: driver accesses to the model, the model's DMA and interrupts back.

With a description that has a "qemu" section, the gateway starts that QEMU
itself (x-remote machine, the card's model, the bridge to SOCKET, QMP in the
run directory); QEMU's output goes to the gateway's log. If QEMU dies, its
card leaves the host (the driver sees a surprise removal); with
--restart-qemu it is started again (backoff from 0.5 s, giving up after 5
deaths in a row within 10 s of starting), the card comes back and its
driver binds again; without, the gateway stops (exit 1).

Runs until SIGINT or SIGTERM ('${PROG} stop'): the cards leave the host,
QEMU is asked to quit over QMP (killed after the grace period), the
sockets and the state file are removed.

  --device FILE          a device description (JSON, see gateway/devices/): the
                         card a model must announce, its relayed regions and
                         its QEMU model
  --qemu BINARY          the qemu-system-x86_64 to launch (default: the one
                         'make qemu' builds, ${defaultQemuBinary()})
  --attach-qmp QMP       do not launch QEMU: the user started it (with
                         -chardev socket,path=SOCKET for the bridge); keep a QMP
                         connection to it at QMP (a UNIX socket path or HOST:PORT)
  --no-qemu              launch nothing, only listen for models
  --restart-qemu         start QEMU again when it dies
  --vnc HOST:N           show the card's display on VNC display N (port 5900+N);
                         ':N' listens on 127.0.0.1 only
  --qemu-grace-ms N      how long QEMU has to quit when asked (default 5000)
  --dashboard PORT       serve the web dashboard (the card's display, the event
                         trace, counters, QEMU's status) on 127.0.0.1:PORT (0: any
                         free port); its URL, with the access token, is logged
                         and shown by 'status'
  --socket PATH          the socket models connect to; it also names this
                         gateway for status and stop (default ${DEFAULT_SOCKET})
${RUN_DIR_HELP}
  --pciem PATH           the pciem device node (default /dev/pciem)
  --read-timeout-ms N    how long a driver read waits for the model before it
                         reads all-ones (default 1000)
  --log-level LEVEL      ${LEVELS.join(', ')} (default info); logs go to stderr,
                         as JSON lines when stderr is not a terminal
  -h, --help             this text`,
    async run(v) {
      const level = str(v, 'log-level') ?? 'info';
      if (!(LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level: '${level}' is not one of ${LEVELS.join(', ')}`);
      const timeout = wholeNumber(v, 'read-timeout-ms', 1000, 1, 60_000, 'milliseconds');
      const grace = wholeNumber(v, 'qemu-grace-ms', 5000, 0, 600_000, 'milliseconds');
      const dashboard = v.dashboard === undefined ? null : wholeNumber(v, 'dashboard', 0, 0, 65535, 'port');
      const modes = ['qemu', 'attach-qmp', 'no-qemu'].filter((k) => v[k] !== undefined);
      if (modes.length > 1) throw new UsageError(`--${modes[0] ?? ''} and --${modes[1] ?? ''}: one way to have a QEMU at a time`);
      const launching = v['attach-qmp'] === undefined && v['no-qemu'] === undefined;
      for (const k of ['restart-qemu', 'vnc', 'qemu-grace-ms']) {
        if (v[k] !== undefined && !launching) throw new UsageError(`--${k}: only when the gateway launches QEMU (not with --${modes[0] ?? ''})`);
      }
      const vnc = str(v, 'vnc') === undefined ? undefined : parseVnc(str(v, 'vnc') ?? '');
      let attach: QmpEndpoint | undefined;
      if (v['attach-qmp'] !== undefined) {
        const ep = parseQmpEndpoint(str(v, 'attach-qmp') ?? '');
        if (!ep) throw new UsageError(`--attach-qmp: '${str(v, 'attach-qmp') ?? ''}' is not a UNIX socket path or HOST:PORT`);
        attach = ep;
      }
      let description: Description | undefined;
      const device = str(v, 'device');
      if (device !== undefined) description = loadDescription(device);
      let launch: LaunchConfig | undefined;
      if (launching && description?.qemu) {
        const explicit = str(v, 'qemu');
        const binary = explicit ?? defaultQemuBinary();
        checkBinary(binary, explicit !== undefined ? '--qemu' : 'the default QEMU', explicit !== undefined ? '' : "run 'make qemu' to build it, or pass --qemu BINARY");
        launch = { binary, restart: v['restart-qemu'] === true, graceMs: grace, ...(vnc !== undefined ? { vnc } : {}) };
      } else if (launching) {
        const flag = ['qemu', 'restart-qemu', 'vnc'].find((k) => v[k] !== undefined);
        if (flag !== undefined) {
          throw new UsageError(device === undefined
            ? `--${flag}: needs --device FILE (a description with a "qemu" section says which model to launch)`
            : `--${flag}: ${device} has no "qemu" section saying which QEMU device models the card`);
        }
      }
      const pciem = str(v, 'pciem');
      // A launched model describes its card at once: without pciem.ko there is nothing to put it on.
      if (launch && !existsSync(pciem ?? '/dev/pciem')) {
        throw new PciemError('PCIEM_ERR_NOT_LOADED', `${pciem !== undefined ? `--pciem ${pciem}` : '/dev/pciem'}: no such device node: is pciem.ko loaded?`);
      }
      const log = createLogger({ level: level as Level });
      const backend = new PciemBackend({ ...(pciem !== undefined ? { path: pciem } : {}), readTimeoutMs: timeout });
      return serve({
        backend, log, name: `${PROG} 0.1.0`,
        socket: str(v, 'socket') ?? DEFAULT_SOCKET,
        runDir: str(v, 'run-dir') ?? defaultRunDir(),
        ...(description ? { description } : {}),
        ...(launch ? { launch } : {}),
        ...(attach ? { attachQmp: attach } : {}),
      }, dashboard === null ? undefined : async (svc) => {
        // Loaded only when asked for: status and stop need none of it.
        const { startDashboard } = await import('./dashboard/index.js');
        const d = await startDashboard({ server: svc.server, qmp: () => svc.qmp(), port: dashboard, log: log.child({ component: 'dashboard' }) });
        svc.setDashboard(d.url);
        return () => d.close();
      });
    },
  },

  status: {
    summary: 'show the running gateways: cards, counters, QEMU (exit 3 if none runs)',
    usage: `${PROG} status [--socket PATH] [--run-dir DIR] [--json]`,
    options: {
      socket: { type: 'string' },
      'run-dir': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Shows each gateway running from the run directory (or only the one
serving --socket): its cards and their counters, and its QEMU (pid, run
state from QMP, restarts). State left by a gateway that is gone (killed)
is reported and removed.

Exit status: 0 if a gateway runs, 3 if none does.

${SOCKET_HELP}
${RUN_DIR_HELP}
  --json                 one JSON object: { "runDir", "gateways": [status
                         reports], "stale": [what was removed] }
  -h, --help             this text`,
    async run(v) {
      const runDir = str(v, 'run-dir') ?? defaultRunDir();
      const { live, stale } = findGateways(runDir, str(v, 'socket'));
      const gateways = await Promise.all(live.map(async (g) => {
        try {
          return { state: g.state, report: await queryControl(g.state.control) };
        } catch (e) {
          return { state: g.state, error: (e as Error).message };
        }
      }));
      if (v.json) {
        process.stdout.write(`${JSON.stringify({ runDir, gateways: gateways.map((g) => ('report' in g ? g.report : { pid: g.state.pid, socket: g.state.socket, error: g.error })), stale })}\n`);
      } else {
        for (const s of stale) process.stdout.write(`${s}\n`);
        if (gateways.length === 0) process.stdout.write(`no gateway is running${str(v, 'socket') !== undefined ? ` on ${str(v, 'socket') ?? ''}` : ''} (run directory ${runDir})\n`);
        for (const g of gateways) process.stdout.write('report' in g ? describe(g.report) : `gateway pid ${g.state.pid} (socket ${g.state.socket}) is running but does not answer: ${g.error}\n`);
      }
      return gateways.length > 0 ? 0 : EXIT_NOT_RUNNING;
    },
  },

  stop: {
    summary: 'stop running gateways (SIGTERM, then wait for them to clean up)',
    usage: `${PROG} stop [--socket PATH] [--run-dir DIR] [--timeout-ms N]`,
    options: {
      socket: { type: 'string' },
      'run-dir': { type: 'string' },
      'timeout-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: `Sends SIGTERM to each gateway running from the run directory (or only the
one serving --socket) and waits until it has exited: its cards have left
the host, its QEMU has quit, its sockets and state file are gone.

Exit status: 0 when every one stopped, 1 if one did not within the
timeout, 3 if none was running.

${SOCKET_HELP}
${RUN_DIR_HELP}
  --timeout-ms N         how long to wait for each (default 20000)
  -h, --help             this text`,
    async run(v) {
      const runDir = str(v, 'run-dir') ?? defaultRunDir();
      const timeout = wholeNumber(v, 'timeout-ms', 20_000, 1, 600_000, 'milliseconds');
      const { live, stale } = findGateways(runDir, str(v, 'socket'));
      for (const s of stale) process.stdout.write(`${s}\n`);
      if (live.length === 0) {
        process.stdout.write(`no gateway is running${str(v, 'socket') !== undefined ? ` on ${str(v, 'socket') ?? ''}` : ''} (run directory ${runDir})\n`);
        return EXIT_NOT_RUNNING;
      }
      let code = 0;
      await Promise.all(live.map(async ({ path, state }) => {
        const t0 = Date.now();
        try {
          process.kill(state.pid, 'SIGTERM');
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EPERM') {
            process.stdout.write(`gateway pid ${state.pid} (${state.socket}): not allowed to signal it (run as its user, or root)\n`);
            code = 1;
            return;
          }
        }
        while (isAlive(state) && Date.now() - t0 < timeout) await sleep(50);
        if (isAlive(state)) {
          process.stdout.write(`gateway pid ${state.pid} (${state.socket}) did not stop within ${timeout} ms\n`);
          code = 1;
          return;
        }
        // A gateway that cleaned up left nothing; one that could not, we clean after.
        const left = readState(path) !== null;
        removeState(path, state);
        process.stdout.write(`stopped gateway pid ${state.pid} (${state.socket}) in ${((Date.now() - t0) / 1000).toFixed(1)} s${left ? '; removed the state it left' : ''}\n`);
      }));
      return code;
    },
  },
};

/** The live gateways in `runDir` (or the one serving `socket`); stale state is removed and described. */
function findGateways(runDir: string, socket: string | undefined): { live: FoundState[]; stale: string[] } {
  let found: FoundState[];
  const stale: string[] = [];
  if (socket !== undefined) {
    const path = statePaths(runDir, socket).state;
    const state = readState(path);
    found = state ? [{ path, state }] : [];
  } else {
    const all = listStates(runDir);
    found = all.found;
    for (const b of all.bad) stale.push(`ignored ${b.path}: ${b.error}`);
  }
  const live: FoundState[] = [];
  for (const f of found) {
    if (isAlive(f.state)) {
      live.push(f);
    } else {
      removeState(f.path, f.state);
      stale.push(`removed stale state of gateway pid ${f.state.pid} (socket ${f.state.socket}): the process is gone`);
    }
  }
  return { live, stale };
}

function duration(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}

/** A status report for people. */
function describe(r: StatusReport): string {
  const q = r.qemu;
  const lines = [`gateway pid ${r.pid}, up ${duration(r.uptimeSec)}`, `  model socket  ${r.socket}`];
  if (q.mode === 'none') {
    lines.push('  QEMU          not managed (models connect by themselves)');
  } else {
    const pid = q.pid !== null ? `pid ${q.pid}, ` : '';
    const restarts = q.mode === 'launched' ? `; restarts ${q.restarts}${q.lastExit !== null ? `, last exit: ${q.lastExit}` : ''}` : '';
    lines.push(`  QEMU          ${q.mode}, ${pid}${q.status}${restarts}`);
    lines.push(`                ${[q.binary, q.qmp !== null ? `QMP ${q.qmp}` : null, q.vnc !== null ? `VNC ${q.vnc}` : null].filter((x) => x !== null).join(', ')}`);
  }
  if (r.dashboard !== null) lines.push(`  dashboard     ${r.dashboard}`);
  if (r.sessions.length === 0) lines.push('  card          none yet: waiting for a model to connect');
  for (const s of r.sessions) {
    lines.push(`  card          ${s.device || '(not described yet)'} from ${s.model || 'a model'}: ${s.state}${s.address !== null ? ` at ${s.address}` : ''}`);
    const c = s.counters;
    const keys = ['mmio_writes', 'mmio_reads', 'config_writes', 'dma_reads', 'dma_writes', 'dma_bytes', 'interrupts', 'resets', 'timeouts', 'errors_in', 'errors_out'];
    lines.push(`                ${keys.filter((k) => k in c).map((k) => `${k}=${String(c[k])}`).join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function mainHelp(): string {
  const cmds = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n');
  return `usage: ${PROG} <command> [options]\n\ncommands:\n${cmds}\n\n'${PROG} <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`${PROG}: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')}; see ${PROG} --help)\n`);
    return 2;
  }
  try {
    let values: Record<string, string | boolean | undefined>;
    try {
      const parsed = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: false });
      values = parsed.values as Record<string, string | boolean | undefined>;
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^Unknown option/, 'unknown option').replace(/\. To specify.*$/s, ''));
    }
    if (values.help) {
      process.stdout.write(`usage: ${cmd.usage}\n\n${cmd.help}\n`);
      return 0;
    }
    return await cmd.run(values);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${PROG} ${name}: ${e.message}\nusage: ${cmd.usage}\n(${PROG} ${name} --help for details)\n`);
      return 2;
    }
    if (e instanceof PciemError) {
      process.stderr.write(`${PROG} ${name}: ${e.message} [${e.code}]\n`);
      return 1;
    }
    throw e;
  }
}
