// Runs inside the VM: the whole chain for the ProtoPCIem card. pciem.ko,
// the gateway (in this process: GatewayServer + PciemBackend + the shipped
// description), QEMU with the card model and the pciem-bridge, and the real
// protopciem.ko bound to the card pciem made; then the driver's paths
// through all of it (ppctl), with the frame checked in a QMP screendump.
// Prints one JSON line of results; test/vm/e2e.test.ts checks them.
//
// Environment: QEMU, PCIEM_KO, PROTOPCIEM_KO, PPCTL (paths).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { loadDescription } from '../../../gateway/src/description.js';
import { createLogger } from '../../../gateway/src/log.js';
import { PciemBackend } from '../../../gateway/src/relay/pciem-host.js';
import { GatewayServer } from '../../../gateway/src/relay/server.js';
import { Qmp } from '../../lib/qmp.js';

const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const step = (what: string): void => console.error(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

async function waitFor(what: string, f: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function cardInSysfs(): string | null {
  for (const d of readdirSync('/sys/bus/pci/devices')) {
    const v = readFileSync(`/sys/bus/pci/devices/${d}/vendor`, 'utf8').trim();
    const p = readFileSync(`/sys/bus/pci/devices/${d}/device`, 'utf8').trim();
    if (v === '0x1f0c' && p === '0x0001') return d;
  }
  return null;
}

// Anything that makes the driver touch the card must not block this
// process: the gateway answering the driver's reads runs on its event loop.
const run = promisify(execFile);
async function drv(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { encoding: 'latin1', maxBuffer: 4 << 20 });
  return r.stdout;
}
const result: Record<string, unknown> = {};
const ppctl = async (...args: string[]): Promise<string> => (await drv(env('PPCTL'), args)).trim();

async function main(): Promise<void> {
  sh('insmod', [env('PCIEM_KO')]);
  const desc = loadDescription('gateway/devices/protopciem.json');
  const server = new GatewayServer({ backend: new PciemBackend({ readTimeoutMs: 2000 }), description: desc.device, log: createLogger({ level: 'info' }) });
  await server.listen('/tmp/gw.sock');
  step('gateway listening');

  const qemu = spawn(env('QEMU'), [
    '-machine', 'x-remote,vfio-user=off', '-nodefaults', '-display', 'none',
    '-device', 'protopciem,id=card0,msi=on',
    '-chardev', 'socket,id=gw,path=/tmp/gw.sock',
    '-object', 'pciem-bridge,id=br0,device=card0,chardev=gw',
    '-qmp', 'unix:/tmp/qmp.sock,server=on,wait=off',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  let qemuExit: string | null = null;
  qemu.on('exit', (code, sig) => {
    qemuExit = `QEMU exited: ${String(code ?? sig)}`;
  });
  try {
    const session = await server.nextDevice(120_000);
    step(`card on the host: ${session.deviceName} (${session.modelName})`);
    const qmp = await Qmp.connect('/tmp/qmp.sock', 60_000);
    const bdf = cardInSysfs();
    result.bdf = bdf;
    await drv('insmod', [env('PROTOPCIEM_KO')]);
    await waitFor('/dev/protopciem', () => existsSync('/dev/protopciem'), 20_000);
    result.irqMode = readFileSync(`/sys/bus/pci/devices/${bdf ?? ''}/stats/irq_mode`, 'utf8').trim();
    step(`driver bound, irq mode ${String(result.irqMode)}`);

    result.add = await ppctl('arith', 'add', '20');
    result.mul = await ppctl('arith', 'mul', '7');
    result.xor = await ppctl('arith', 'xor', '0x0f0f0f0f');
    step('arithmetic done');

    // A command buffer: CLEAR to a colour (docs/protopciem.md, "Command buffers").
    const clear = Buffer.from([0x01, 0, 0, 0, 0x0c, 0, 0, 0, 0x12, 0x34, 0x56, 0xff]);
    writeFileSync('/tmp/clear.bin', clear);
    await ppctl('cmdbuf', '/tmp/clear.bin');
    const afterClear = await screen(qmp);
    result.clearOk = afterClear.every((b, i) => b === [0x12, 0x34, 0x56][i % 3]);
    step('command buffer done');

    writeFileSync('/tmp/frame.rgb', await drv(env('PPCTL'), ['pattern', '7']), 'latin1');
    const frame = readFileSync('/tmp/frame.rgb');
    const t = Date.now();
    await ppctl('frame', '/tmp/frame.rgb', '1');
    result.frameMs = Date.now() - t;
    const shot = await screen(qmp);
    result.frameBytes = frame.length;
    result.frameExact = shot.equals(frame);
    step(`frame submitted in ${String(result.frameMs)} ms, exact: ${String(result.frameExact)}`);

    const stats = readFileSync(`/sys/bus/pci/devices/${bdf ?? ''}/stats/operations`, 'utf8').trim();
    result.operations = Number(stats);
    result.gateway = Object.fromEntries(Object.entries(session.counters).map(([k, v]) => [k, Number(v)]));
    const model = await session.modelStats();
    result.model = Object.fromEntries(Object.entries(model).map(([k, v]) => [k, Number(v)]));

    await drv('rmmod', ['protopciem']);
    await qmp.execute('quit').catch(() => undefined);
    qmp.close();
    await waitFor('QEMU to exit', () => qemuExit !== null, 20_000);
    await waitFor('the device to leave the host', () => cardInSysfs() === null, 20_000);
    result.removed = true;
  } finally {
    if (qemuExit === null) qemu.kill('SIGKILL');
    await server.close();
  }
  sh('rmmod', ['pciem']);
  result.qemuExit = qemuExit;
}

/** The card's display now: the PPM's pixels. */
async function screen(qmp: Qmp): Promise<Buffer> {
  await qmp.execute('screendump', { filename: '/tmp/shot.ppm', format: 'ppm' });
  const ppm = readFileSync('/tmp/shot.ppm');
  const hdr = 'P6\n640 480\n255\n';
  if (ppm.subarray(0, hdr.length).toString('latin1') !== hdr) throw new Error(`screendump: unexpected header ${JSON.stringify(ppm.subarray(0, 20).toString('latin1'))}`);
  return ppm.subarray(hdr.length);
}

main().then(
  () => {
    console.log(JSON.stringify(result));
    process.exit(0);
  },
  (e: unknown) => {
    console.log(JSON.stringify({ ...result, error: e instanceof Error ? e.message : String(e) }));
    process.exit(1);
  },
);
