// `make bench`: the performance targets of DESIGN.md, each measured against
// its baseline in the same run, p50/p99, as ratios. Not a test: it prints
// the table and fails only when something could not be measured.
//
//   doorbell -> MSI round trip   protopciem.ko ARITH through the gateway + QEMU
//                                model vs the minimal C card, same VM (TCG)
//   posted-write relay rate      driver writes through the gateway, the g2m
//                                ring and the bridge to the model vs a raw C
//                                SPSC ring between two processes (this machine)
//   bulk DMA host -> model       a 921,600-byte frame read by the model
//                                (DMA_FRAME) vs memcpy of the same size
//   DOOM frames/s                -timedemo demo1 through the card vs the
//                                same timedemo in file mode, same VM
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CPrograms } from '../lib/ctest.js';
import { qemuBinary } from '../lib/card-rig.js';
import { repoRoot } from '../lib/paths.js';
import { chainEnv, vmRunScript } from '../lib/vm.js';

type Json = Record<string, number>;

function jsonLine(out: string, what: string): Json {
  const line = out.split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) throw new Error(`${what}: no result line in its output:\n${out}`);
  const j = JSON.parse(line) as Json & { error?: string };
  if (j.error) throw new Error(`${what}: ${j.error}\n${out}`);
  return j;
}

function runHere(what: string, cmd: string, args: string[]): Json {
  console.error(`bench: ${what} ...`);
  const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`${what} failed (${String(r.status)}):\n${r.stdout}${r.stderr}`);
  return jsonLine(r.stdout, what);
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x >= 100 ? 0 : 1) : '-');

async function main(): Promise<void> {
  const progs = new CPrograms('bench');
  try {
    const baseline = progs.build('baseline', { sources: ['test/bench/baseline.c'], includes: ['proto/ring'] });
    const ppctl = progs.build('ppctl', { sources: ['guests/ppctl/ppctl.c'], includes: ['kernel/include/uapi'] });
    const card = progs.build('protopciem_card', { sources: ['kernel/tests/protopciem_card.c'], includes: ['kernel/include/uapi'] });
    const qemu = qemuBinary();

    const ring = runHere('raw C SPSC ring between two processes', baseline, ['ring', '2000000']);
    const memcpy = runHere('memcpy of 921,600 bytes', baseline, ['memcpy', '921600', '400']);
    const relay = runHere('gateway + QEMU model, fake host', process.execPath, ['--import', 'tsx', 'test/bench/relay-host.ts']);

    console.error('bench: doorbell -> MSI in the VM (C card, then the gateway chain) ...');
    const vm = await vmRunScript(`${chainEnv(qemu, { PPCTL: ppctl, CARD: card, N: '${N:-1000}' })}
node --import tsx test/bench/doorbell-vm.ts`, { timeoutSec: 900, memoryMiB: 3072, cpus: 2 });
    if (vm.code !== 0) throw new Error(`the VM benchmark failed (${vm.code}):\n${vm.output}${vm.harness}`);
    const dv = JSON.parse(vm.output.split('\n').reverse().find((l) => l.startsWith('{')) ?? '{}') as { c: Json; gateway: Json };

    console.error('bench: DOOM -timedemo demo1 in the VM (file mode, then through the card; a few minutes) ...');
    execFileSync('make', ['--no-print-directory', 'doom'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    const dm = await vmRunScript(`${chainEnv(qemu, { DOOM_RUN: join(repoRoot, 'guests/doom/run-doom') })}
node --import tsx test/bench/doom-vm.ts`, { timeoutSec: 1800, memoryMiB: 3072, cpus: 2 });
    if (dm.code !== 0) throw new Error(`the DOOM benchmark failed (${dm.code}):\n${dm.output}${dm.harness}`);
    const doom = jsonLine(dm.output, 'DOOM in the VM');

    const rows: string[][] = [
      ['what', 'ours p50', 'ours p99', 'baseline p50', 'baseline p99', 'ratio (p50)', 'target'],
      ['doorbell -> MSI round trip, VM (us)', f1(dv.gateway.p50_us ?? NaN), f1(dv.gateway.p99_us ?? NaN), f1(dv.c.p50_us ?? NaN), f1(dv.c.p99_us ?? NaN),
        `${f1((dv.gateway.p50_us ?? NaN) / (dv.c.p50_us ?? NaN))}x the C card`, '<= 1.3x'],
      ['posted-write relay, rings (writes/s)', String(relay.writes_per_s), '', String(ring.ring_msgs_per_s), '',
        `${((relay.writes_per_s ?? 0) / (ring.ring_msgs_per_s ?? 1)).toFixed(3)}x the raw ring`, '>= 0.5x and >= 1M/s'],
      ['bulk DMA host -> model, 921,600 B (us)', f1(relay.frame_p50_us ?? NaN), f1(relay.frame_p99_us ?? NaN), f1(memcpy.memcpy_p50_us ?? NaN), f1(memcpy.memcpy_p99_us ?? NaN),
        `${((memcpy.memcpy_p50_us ?? 0) / (relay.frame_p50_us ?? 1)).toFixed(4)}x memcpy speed`, '>= 0.5x'],
      ['DOOM -timedemo demo1, VM (frames/s)', f1(doom.card ?? NaN), '', f1(doom.file ?? NaN), '',
        `${((doom.card ?? 0) / (doom.file ?? 1)).toFixed(3)}x file mode`, '>= 0.9x'],
      ['DOOM frame submit -> display, VM (ms)', f1(doom.latency_p50_ms ?? NaN), f1(doom.latency_p99_ms ?? NaN), '', '', '(no baseline: informative)', ''],
      ['doorbell -> MSI, this machine, fake host (us)', f1(relay.add_p50_us ?? NaN), f1(relay.add_p99_us ?? NaN), '', '', '(no baseline: informative)', ''],
    ];
    const w = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
    const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(w[i] ?? 0)).join(' | ')} |`;
    console.log(line(rows[0] ?? []));
    console.log(`|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`);
    for (const r of rows.slice(1)) console.log(line(r));
    console.log(`\n(VM: Debian 6.12 under TCG, 2 vCPUs; ${String(dv.c.n)} round trips each; DOOM ${String(doom.frames)} frames each way.)`);
  } finally {
    progs.remove();
  }
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
