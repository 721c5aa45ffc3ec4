// Inside the host VM: brings up the whole chain for the ProtoPCIem card —
// pciem.ko, the gateway (in this process: GatewayServer on PciemBackend with
// the shipped description), QEMU with the card model and the pciem-bridge,
// and protopciem.ko bound to the card — and takes it down again. Used by
// the demo (demo.ts), the end-to-end tests (test/vm/scripts/) and
// test/bench/doorbell-vm.ts. QMP goes through the gateway's client.
//
// Anything that makes the driver touch the card must not block this
// process: the gateway answering the driver's reads runs on its event loop
// (use drv(), never a synchronous exec, for such commands).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { loadDescription } from '../../gateway/src/description.js';
import { createLogger } from '../../gateway/src/log.js';
import { modelArgs } from '../../gateway/src/qemu.js';
import { Qmp } from '../../gateway/src/qmp.js';
import { PciemBackend } from '../../gateway/src/relay/pciem-host.js';
import { GatewayServer } from '../../gateway/src/relay/server.js';
import type { ModelSession } from '../../gateway/src/relay/session.js';

export const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
export const step = (what: string): void => console.error(`[chain ${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);
export const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

const run = promisify(execFile);
/** Runs a command without blocking the event loop; its stdout. */
export async function drv(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { encoding: 'latin1', maxBuffer: 4 << 20 });
  return r.stdout;
}

export async function waitFor(what: string, f: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The PCI address of the ProtoPCIem card, if one is on the bus. */
export function cardInSysfs(): string | null {
  for (const d of readdirSync('/sys/bus/pci/devices')) {
    const v = readFileSync(`/sys/bus/pci/devices/${d}/vendor`, 'utf8').trim();
    const p = readFileSync(`/sys/bus/pci/devices/${d}/device`, 'utf8').trim();
    if (v === '0x1f0c' && p === '0x0001') return d;
  }
  return null;
}

export interface Chain {
  server: GatewayServer;
  session: ModelSession;
  qemu: ChildProcess;
  qmp: Qmp;
  bdf: string;
  qemuExit(): string | null;
}

export interface ChainOptions {
  /** Extra QEMU arguments (e.g. a VNC display). */
  qemuArgs?: string[];
  /** Extra properties of the card model (e.g. frame-log: a chardev in qemuArgs). */
  deviceProps?: Record<string, string | boolean>;
}

/** pciem.ko must be loaded; loads protopciem.ko (PROTOPCIEM_KO) once the card is there. */
export async function startChain(opts: ChainOptions = {}): Promise<Chain> {
  const desc = loadDescription('gateway/devices/protopciem.json');
  const server = new GatewayServer({ backend: new PciemBackend({ readTimeoutMs: 2000 }), description: desc, log: createLogger({ level: 'info' }) });
  await server.listen('/tmp/gw.sock');
  step('gateway listening');
  const qemu = spawn(env('QEMU'), modelArgs(desc, {
    socket: '/tmp/gw.sock', qmp: '/tmp/qmp.sock',
    ...(opts.qemuArgs ? { extra: opts.qemuArgs } : {}), ...(opts.deviceProps ? { deviceProps: opts.deviceProps } : {}),
  }), { stdio: ['ignore', 'inherit', 'inherit'] });
  let exit: string | null = null;
  qemu.on('exit', (code, sig) => {
    exit = `QEMU exited: ${String(code ?? sig)}`;
  });
  try {
    const session = await server.nextDevice(120_000);
    step(`card on the host: ${session.deviceName} (${session.modelName})`);
    const qmp = await Qmp.connect({ path: '/tmp/qmp.sock' }, { timeoutMs: 60_000 });
    const bdf = cardInSysfs();
    if (bdf === null) throw new Error('the card is not in /sys/bus/pci/devices');
    await drv('insmod', [env('PROTOPCIEM_KO')]);
    await waitFor('/dev/protopciem', () => existsSync('/dev/protopciem'), 20_000);
    step('driver bound');
    return { server, session, qemu, qmp, bdf, qemuExit: () => exit };
  } catch (e) {
    if (exit === null) qemu.kill('SIGKILL');
    await server.close();
    throw e;
  }
}

/** Unbinds the driver, asks QEMU to quit, waits for the card to leave the host. */
export async function stopChain(c: Chain): Promise<void> {
  try {
    await drv('rmmod', ['protopciem']);
    await c.qmp.quit().catch(() => undefined);
    c.qmp.close();
    await waitFor('QEMU to exit', () => c.qemuExit() !== null, 20_000);
    await waitFor('the device to leave the host', () => cardInSysfs() === null, 20_000);
  } finally {
    if (c.qemuExit() === null) c.qemu.kill('SIGKILL');
    await c.server.close();
  }
}
