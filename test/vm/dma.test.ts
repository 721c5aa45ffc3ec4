// pciem.ko DMA in the Debian 6.12 and 6.1 VMs, and in a 6.12 VM with an
// IOMMU on: confinement to the driver's mappings, DMA, atomics, PRP and SG
// walks, P2P, removal, bad input.
// The behaviours are in kernel/tests/dma_selftest.c (kselftest shape); this
// suite builds it, runs it as root in the VM with pciem.ko and the DMA test
// driver (pciem_dmadrv.ko) loaded, and checks dmesg afterwards.
import { expect } from 'chai';
import { relative } from 'node:path';
import { CPrograms, selftestBuild } from '../lib/ctest.js';
import { type KernelVersion, kernelModule, repoRoot } from '../lib/paths.js';
import { expectSelftest } from '../lib/selftest.js';
import { vmRunScript, type VmResult } from '../lib/vm.js';

const BAD_DMESG = /BUG:|Oops|WARNING:|Call Trace|general protection|Kernel panic/;

// 1 MiB of RAM the kernel keeps out of its own use (memmap=SIZE$START): the
// physical range the P2P whitelist test hands to the card. Inside the VM's
// 2 GiB of RAM, so it is backed, and not System RAM, so it may be whitelisted.
const P2P_START = 0x7e000000;
const P2P_SIZE = 0x100000;
const APPEND = `memmap=${P2P_SIZE}$0x${P2P_START.toString(16)}`;

let selftest = '';
let programs: CPrograms | undefined;

function loadModules(kernel: KernelVersion): string {
  const pciem = relative(repoRoot, kernelModule(kernel, 'pciem'));
  const dmadrv = relative(repoRoot, kernelModule(kernel, 'tests/pciem_dmadrv'));
  return `insmod ${pciem}\ninsmod ${dmadrv}\n`;
}

function runSelftest(names: string[], kernel: KernelVersion, env = '', iommu = false): Promise<VmResult> {
  const range = `0x${P2P_START.toString(16)}+0x${P2P_SIZE.toString(16)}`;
  return vmRunScript(
    `${loadModules(kernel)}rc=0\nPCIEM_P2P_RANGE=${range} ${env} ${selftest} ${names.join(' ')} || rc=$?\n` +
      'echo "=== dmesg"\ndmesg\nexit $rc',
    { timeoutSec: 900, kernel, append: APPEND, iommu },
  );
}

function show(r: VmResult): void {
  for (const l of r.output.split('\n')) if (/^(ok|not ok|#)/.test(l)) console.log(`      ${l}`);
}

function dmesgOf(r: VmResult): string {
  return r.output.slice(r.output.indexOf('=== dmesg'));
}

const main = [
  'read_coherent', 'write_coherent', 'read_write_streaming', 'read_write_sg', 'crossing_mappings',
  'unmapped_refused', 'direction_enforced', 'bus_master_off', 'freed_refused', 'mappings_list',
  'atomic_ops', 'atomic_race', 'prp_one_page', 'prp_two_pages', 'prp_list', 'prp_chained', 'prp_errors',
  'sgl', 'p2p_devices', 'p2p_write_events', 'p2p_whitelist', 'removal_with_mappings', 'errors', 'throughput'];

describe('pciem.ko DMA in the VM', function () {
  this.timeout(1_000_000);

  before(function () {
    programs = new CPrograms('dma-selftest');
    selftest = programs.build('dma_selftest', selftestBuild('kernel/tests/dma_selftest.c'));
  });
  after(function () {
    programs?.remove();
  });

  for (const kernel of ['6.12', '6.1'] as const) {
    it(`Debian ${kernel}: confinement, DMA 1 B..4 MiB, atomics, PRP, SGL, P2P, removal, errors (${main.length} tests); dmesg clean`, async function () {
      const r = await runSelftest(main, kernel);
      show(r);
      expectSelftest(r, main);
      const dmesg = dmesgOf(r);
      expect(dmesg).to.not.match(BAD_DMESG);
      // The driver freed what it mapped on every removal, and pciem found nothing left over.
      expect(dmesg).to.match(/pciem_dmadrv \S+: removed, freed 3 buffers/);
      expect(dmesg).to.not.match(/DMA mappings behind/);
    });
  }

  // One boot with an IOMMU on: the acceptance again, the proof that no IOMMU
  // claims a pciem device, and the fuzz.
  it(`Debian 6.12 with an IOMMU (--iommu): no iommu group for pciem, the same ${main.length} tests, a fuzz of 100,000 DMA ioctls; dmesg clean`, async function () {
    const names = [...main, 'iommu_on_no_group', 'fuzz'];
    const r = await runSelftest(names, '6.12', 'PCIEM_DMA_FUZZ_CALLS=100000', true);
    show(r);
    expectSelftest(r, names);
    expect(r.output).to.match(/^# 100000 DMA ioctls in/m);
    const dmesg = dmesgOf(r);
    expect(dmesg).to.match(/DMAR: IOMMU enabled/);
    expect(dmesg).to.not.match(BAD_DMESG);
    expect(dmesg).to.not.match(/DMA mappings behind|an IOMMU translates/);
  });
});
