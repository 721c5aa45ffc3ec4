// A card written on the gateway's PciemDevice, run as root inside the VM with
// pciem.ko and pciem_testdrv.ko loaded. Prints one JSON line of results.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { PciemDevice, type PciemEvent } from '../../../gateway/src/pciem/device.js';
import { EVENT, TRACE } from '../../../gateway/src/pciem/uapi.js';

const DBG = '/sys/kernel/debug/pciem_testdrv';
const N = Number(process.env.WRITES ?? 10000);

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 10) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

function bdfOf(phys: bigint): string {
  for (const d of readdirSyncSafe('/sys/bus/pci/devices')) {
    if (parseInt(d, 16) < 0x10000) continue;
    const start = readFileSync(`/sys/bus/pci/devices/${d}/resource`, 'utf8').split(/\s+/)[0] ?? '';
    if (BigInt(start) === phys) return d;
  }
  throw new Error(`no device with BAR0 at ${phys.toString(16)}`);
}

function readdirSyncSafe(p: string): string[] {
  return existsSync(p) ? readdirSync(p) : [];
}

const dev = PciemDevice.open();
const info = dev.info();
dev.createFunction(0);
dev.setConfig(0, { vendorId: 0x1f0c, deviceId: 0xfff0, classCode: 0xff8000 });
dev.addBar(0, 0, 0x10000, { is64: true });
dev.traceBar(0, 0, TRACE.WRITES);
dev.setRingMode({ lossless: true, timeoutUs: 5_000_000 });
// The gateway's own wait (PciemBackend readTimeoutMs): under TCG, beside
// another VM, answering has taken more than 0.5 s.
dev.setReadRegion(0, 0, 0x100, 0x100, 2_000_000);
dev.register();
const bar0 = dev.mapBar(0, 0);
new DataView(bar0.buffer).setUint32(0x20, 0xcafef00d, true);

const writes: PciemEvent[] = [];
let syncAnswered = 0;
let completeErrors = '';
dev.onEvents((events) => {
  for (const ev of events) {
    if (ev.type === EVENT.MMIO_WRITE) writes.push(ev);
    else if (ev.type === EVENT.MMIO_READ_SYNC) {
      try {
        dev.completeRead(ev.seq, ev.offset * 3n + 7n);
        syncAnswered++;
      } catch (e) {
        // ESTALE: the read timed out before the answer (it read all-ones).
        completeErrors += `${e instanceof Error ? e.message : String(e)}; `;
      }
    }
  }
});
dev.start();
const bdf = bdfOf(dev.barInfo(0, 0).physAddr);
const bound = await waitFor(() => existsSync(`${DBG}/${bdf}`), 5000);

// The driver blocks in its read while the card answers on this event loop:
// drive it from a child process so the loop stays free.
const sh = (cmd: string) => promisify(execFile)('sh', ['-c', cmd]);
const driverRead = async (off: number, size: number): Promise<bigint> => {
  await sh(`echo '${off} ${size}' > ${DBG}/${bdf}/read`);
  return BigInt(readFileSync(`${DBG}/${bdf}/read`, 'utf8').trim());
};

const plainRead = await driverRead(0x20, 4);
const syncRead = await driverRead(0x104, 4);

const t0 = process.hrtime.bigint();
await sh(`echo '${N} 16' > ${DBG}/${bdf}/writes`);
await waitFor(() => writes.length >= N, 30000);
const ms = Number(process.hrtime.bigint() - t0) / 1e6;

let inOrder = writes.length === N;
for (let i = 0; inOrder && i < N; i++) {
  const w = writes[i]!;
  inOrder = w.data === BigInt(i) && w.offset === 16n && w.size === 4 && (i === 0 || w.seq === writes[i - 1]!.seq + 1n);
}
const stats = dev.stats();
dev.close();
const removed = await waitFor(() => !existsSync(`/sys/bus/pci/devices/${bdf}`), 5000);
writeFileSync(1, JSON.stringify({
  apiVersion: info.apiVersion, bound, plainRead: plainRead.toString(16), syncRead: syncRead.toString(16), syncAnswered, completeErrors,
  writes: writes.length, inOrder, ms: Math.round(ms), ringDrops: Number(stats.ring_drops), removed,
}) + '\n');
