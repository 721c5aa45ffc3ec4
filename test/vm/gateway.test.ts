// The gateway's native layer against the real pciem.ko in the 6.12 VM: a
// card written on PciemDevice (test/vm/scripts/native-card.ts) serves the
// test driver: shared-memory reads, reads answered by the card, 10,000
// driver writes in order through the eventfd-woken ring, removal on close().
import { expect } from 'chai';
import { relative } from 'node:path';
import { kernelModule, repoRoot } from '../lib/paths.js';
import { vmRunJson } from '../lib/vm.js';

describe('gateway native layer in the 6.12 VM', function () {
  this.timeout(600_000);

  it('serves a real driver: reads, card-answered reads, 10,000 ordered writes, removal on close', async function () {
    const pciem = relative(repoRoot, kernelModule('6.12', 'pciem'));
    const drv = relative(repoRoot, kernelModule('6.12', 'tests/pciem_testdrv'));
    const { res, output, dmesgClean } = await vmRunJson(`insmod ${pciem}
insmod ${drv}
WRITES=10000 node --import tsx test/vm/scripts/native-card.ts`, 'the native card in the VM', { timeoutSec: 300 });
    console.log(`      10,000 writes in ${String(res.ms)} ms through the ring (TCG)`);
    expect(res).to.include({
      apiVersion: 1, bound: true, plainRead: 'cafef00d', syncRead: (0x104 * 3 + 7).toString(16), syncAnswered: 1, completeErrors: '',
      writes: 10000, inOrder: true, ringDrops: 0, removed: true,
    });
    expect(dmesgClean, output).to.equal(true);
  });
});
