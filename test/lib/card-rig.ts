// The gateway (FakeHost in place of /dev/pciem, the shipped protopciem
// description) joined to the real QEMU running the ProtoPCIem model behind
// the pciem-bridge, with a TypeScript driver on the fake host: what the
// no-kernel integration test and the host benchmarks stand on.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDescription } from '../../gateway/src/description.js';
import { modelArgs } from '../../gateway/src/qemu.js';
import { Qmp } from '../../gateway/src/qmp.js';
import { FakeBackend, type FakeHost } from '../../gateway/src/relay/fake-host.js';
import { GatewayServer } from '../../gateway/src/relay/server.js';
import type { ModelSession } from '../../gateway/src/relay/session.js';
import { repoRoot } from './paths.js';
import { ProtoDriver } from './proto-driver.js';

export interface CardRig {
  dir: string;
  server: GatewayServer;
  session: ModelSession;
  host: FakeHost;
  drv: ProtoDriver;
  qmp: Qmp;
  qemu: ChildProcess;
  /** What QEMU printed. */
  log(): string;
  /** The card's display now (the PPM's pixels). */
  screen(): Promise<Buffer>;
  close(): Promise<void>;
}

/** The QEMU binary `make qemu` builds (building it if needed). */
export function qemuBinary(): string {
  return execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

export interface RigOptions {
  binary?: string;
  /** Have the model log every frame it shows ("N HASH" lines, the frame-log property) to this file. */
  frameLog?: string;
  /** The gateway's bulk area (SessionOptions.bulkBytes; 0: DMA reads cross the socket). */
  bulkBytes?: number;
}

export async function startRig(opts: RigOptions = {}): Promise<CardRig> {
  const binary = opts.binary ?? qemuBinary();
  const dir = mkdtempSync(join(tmpdir(), 'pciem-rig-'));
  const backend = new FakeBackend(5000);
  const description = loadDescription(join(repoRoot, 'gateway/devices/protopciem.json'));
  const server = new GatewayServer({ backend, description, ...(opts.bulkBytes !== undefined ? { bulkBytes: opts.bulkBytes } : {}) });
  await server.listen(join(dir, 'gw.sock'));
  const ready = server.nextDevice(60_000);
  const made = backend.nextDevice(60_000);
  let log = '';
  const qemu = spawn(binary, modelArgs(description, {
    socket: join(dir, 'gw.sock'), qmp: join(dir, 'qmp.sock'),
    ...(opts.frameLog ? { extra: ['-chardev', `file,id=fl,path=${opts.frameLog}`], deviceProps: { 'frame-log': 'fl' } } : {}),
  }), { stdio: ['ignore', 'pipe', 'pipe'] });
  qemu.stdout.on('data', (b: Buffer) => (log += b.toString()));
  qemu.stderr.on('data', (b: Buffer) => (log += b.toString()));
  const close = async (): Promise<void> => {
    qemu.kill('SIGKILL');
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const session = await ready;
    const host = await made;
    const qmp = await Qmp.connect({ path: join(dir, 'qmp.sock') }, { timeoutMs: 20_000 });
    const drv = new ProtoDriver(host);
    drv.init(session);
    return {
      dir, server, session, host, drv, qmp, qemu,
      log: () => log,
      async screen() {
        const s = await qmp.screenPixels(join(dir, 'shot.ppm'));
        if (s.width !== 640 || s.height !== 480) throw new Error(`screendump: ${s.width}x${s.height}, not the card's 640x480`);
        return s.pixels;
      },
      async close() {
        qmp.close();
        await close();
      },
    };
  } catch (e) {
    await close();
    throw new Error(`${e instanceof Error ? e.message : String(e)}; QEMU said: ${log}`, { cause: e });
  }
}
