// End to end in the 6.12 VM (issue 6): pciem.ko + the gateway + QEMU with
// the ProtoPCIem model and the pciem-bridge + the real protopciem.ko. The
// driver's command, command-buffer and frame paths go through the whole
// chain; the frame a program submitted appears byte-exact in a QMP
// screendump. test/vm/scripts/e2e-card.ts runs the chain inside the VM.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { CPrograms, compileC } from '../lib/ctest.js';
import { repoRoot } from '../lib/paths.js';
import { chainEnv, vmRunJson } from '../lib/vm.js';

describe('end to end in the 6.12 VM: driver -> pciem.ko -> gateway -> QEMU card', function () {
  this.timeout(900_000);
  let progs: CPrograms;
  let qemu = '';

  before(function () {
    progs = new CPrograms('e2e');
    compileC({ sources: ['guests/ppctl/ppctl.c'], includes: ['kernel/include/uapi'] }, join(progs.dir, 'ppctl'));
    qemu = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  });

  after(function () {
    progs.remove();
  });

  it('commands, a command buffer and a frame through the whole chain; the frame is byte-exact on the display', async function () {
    const { res, output, dmesgClean } = await vmRunJson(`${chainEnv(qemu, { PPCTL: join(progs.dir, 'ppctl') })}
node --import tsx test/vm/scripts/e2e-card.ts`, 'the chain in the VM', { timeoutSec: 600, memoryMiB: 3072, cpus: 2 });
    console.log(`      frame submit -> display: ${String(res.frameMs)} ms (TCG); gateway counters ${JSON.stringify(res.gateway)}`);
    expect(res).to.include({ irqMode: 'msi', add: '40', mul: '49', xor: String((0x0f0f0f0f ^ 0xffffffff) >>> 0), clearOk: true, frameBytes: 921600, frameExact: true, removed: true });
    const gw = res.gateway as Record<string, number>;
    // The frame moved as bulk DMA, not as 8-byte round trips.
    expect(gw.dma_bytes).to.be.at.least(921600);
    expect(gw.dma_reads).to.be.below(200);
    expect(dmesgClean, output).to.equal(true);
    // Version 3: read-aheads past the end of a mapping are answered short, not refused.
    expect(gw.errors_out, 'gateway errors_out').to.equal(0);
  });
});
