// pciem.ko's interrupts in the Debian VMs: INTx, MSI and MSI-X from a card
// to an unmodified driver. The behaviours are in kernel/tests/irq_selftest.c
// (kselftest shape), driving pciem_irqdrv.ko (kernel/tests/irq_testdrv.c);
// this suite builds the program, runs it as root in the VM with both
// modules loaded, and checks every verdict and dmesg afterwards.
import { expect } from 'chai';
import { relative } from 'node:path';
import { CPrograms, selftestBuild } from '../lib/ctest.js';
import { type KernelVersion, kernelModule, repoRoot } from '../lib/paths.js';
import { expectSelftest } from '../lib/selftest.js';
import { vmRunScript, type VmResult } from '../lib/vm.js';

const BAD_DMESG = /BUG:|Oops|WARNING:|Call Trace|general protection|Kernel panic|nobody cared/;

/** Every test of irq_selftest.c, in its order. */
const TESTS = [
  'msi_burst', 'msix_burst', 'intx_burst', 'concurrent', 'msi_mask', 'msix_mask', 'msix_function_mask',
  'lazy_disable', 'msi_plain', 'flr', 'intx_level', 'intx_disable', 'irqfd', 'switch_under_fire',
  'rebind_under_fire', 'ioremap_storm', 'uio_intx', 'errors', 'remove', 'fuzz'];

let selftest = '';
let programs: CPrograms | undefined;

function runSelftest(kernel: KernelVersion): Promise<VmResult> {
  const pciem = relative(repoRoot, kernelModule(kernel, 'pciem'));
  const drv = relative(repoRoot, kernelModule(kernel, 'tests/pciem_irqdrv'));
  return vmRunScript(`insmod ${pciem}
insmod ${drv}
rc=0
PCIEM_IRQ_BURST=10000 PCIEM_FUZZ_CALLS=100000 PCIEM_STORM_SECONDS=3 ${selftest} ${TESTS.join(' ')} || rc=$?
echo "=== interrupts"
grep -E 'pciem|CPU' /proc/interrupts || true
echo "=== dmesg"
dmesg
exit $rc`, { timeoutSec: 900, kernel });
}

function expectCleanDmesg(r: VmResult): void {
  const dmesg = r.output.slice(r.output.indexOf('=== dmesg'));
  expect(dmesg, 'dmesg').to.not.match(BAD_DMESG);
  // x86 no longer asks ACPI to route INTx of pciem's segment.
  expect(dmesg).to.not.match(/can't derive routing|no GSI/);
  expect(dmesg).to.match(/pciem_irqdrv \S+: bound, INTx irq [1-9]\d*/);
}

for (const kernel of ['6.12', '6.1'] as const) {
  describe(`pciem.ko interrupts in the Debian ${kernel} VM`, function () {
    this.timeout(1_000_000);
    let run: VmResult;

    before(async function () {
      if (!selftest) {
        programs = new CPrograms('irq-selftest');
        selftest = programs.build('irq_selftest', selftestBuild('kernel/tests/irq_selftest.c'));
      }
      run = await runSelftest(kernel);
      for (const l of run.output.split('\n')) if (/^(ok|not ok|#|selftest)/.test(l)) console.log(`      ${l}`);
    });

    it(`bursts of 10,000 counted exactly, masking, INTx level, irqfds, interrupts during ioremap loops, removal, bad input (${TESTS.length} tests)`,
      function () {
        expectSelftest(run, TESTS, { ordered: true });
      });

    it('dmesg stays clean: no oops, warning or stuck interrupt', function () {
      expectCleanDmesg(run);
    });
  });
}

after(function () {
  programs?.remove();
});
