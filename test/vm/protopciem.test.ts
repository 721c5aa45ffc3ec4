// protopciem.ko, the ProtoPCIem card's driver, in the Debian VMs against a
// minimal card on /dev/pciem (kernel/tests/protopciem_card.c). The behaviours
// are in kernel/tests/protopciem_test.c (kselftest shape), which starts the
// card (one process per card, up to three at once) in each mode it needs;
// this suite builds both, runs them as root in one VM boot per kernel with
// pciem.ko and protopciem.ko loaded, and checks every verdict, the MSI
// vector, the INTx fallback and dmesg afterwards.
import { expect } from 'chai';
import { relative } from 'node:path';
import { CPrograms } from '../lib/ctest.js';
import { type KernelVersion, kernelModule, repoRoot } from '../lib/paths.js';
import { expectSelftest } from '../lib/selftest.js';
import { vmRunScript, type VmResult } from '../lib/vm.js';

const BAD_DMESG = /BUG:|Oops|WARNING:|Call Trace|general protection|Kernel panic|nobody cared|hung_task/;

/** Every test of protopciem_test.c, in its order. */
const TESTS = [
  'probe', 'arith', 'cmdbuf', 'frame', 'process', 'p2p', 'p2p_refused', 'timeout', 'error', 'surprise_removal',
  'removal_with_mmap', 'intx', 'several_cards', 'dead_idle', 'dead_in_flight', 'dead_silent', 'dead_at_probe',
];

let programs: CPrograms | undefined;

function build(): { test: string; card: string } {
  programs = new CPrograms('protopciem');
  const includes = ['kernel/include/uapi'];
  return {
    card: programs.build('protopciem_card', { sources: ['kernel/tests/protopciem_card.c'], includes }),
    test: programs.build('protopciem_test', { sources: ['kernel/tests/protopciem_test.c'], includes, flags: ['-pthread'] }),
  };
}

function run(kernel: KernelVersion, bins: { test: string; card: string }): Promise<VmResult> {
  const pciem = relative(repoRoot, kernelModule(kernel, 'pciem'));
  const drv = relative(repoRoot, kernelModule(kernel, 'protopciem'));
  return vmRunScript(`insmod ${pciem}
insmod ${drv}
rc=0
# a card kept alive for the interrupt check below
${bins.card} normal > /tmp/keep.log &
keep=$!
for i in $(seq 50); do [ -e /dev/protopciem ] && break; sleep 0.1; done
echo "=== interrupts"
grep -E 'protopciem' /proc/interrupts || true
kill $keep; wait $keep || true
for i in $(seq 50); do [ -e /dev/protopciem ] || break; sleep 0.1; done
PROTOPCIEM_CARD=${bins.card} ${bins.test} ${TESTS.join(' ')} || rc=$?
echo "=== card log"
tail -n 20 /tmp/protopciem_card*.log || true
echo "=== dmesg"
dmesg
exit $rc`, { timeoutSec: 600, kernel });
}

for (const kernel of ['6.12', '6.1'] as const) {
  describe(`protopciem.ko in the Debian ${kernel} VM`, function () {
    this.timeout(1_000_000);
    let r: VmResult;

    before(async function () {
      r = await run(kernel, build());
      for (const l of r.output.split('\n')) if (/^(ok|not ok|#|selftest)/.test(l)) console.log(`      ${l}`);
    });

    it('binds by PCI ID with one MSI vector and /dev/protopciem, or INTx on a card without MSI', function () {
      const irqs = r.output.slice(r.output.indexOf('=== interrupts'), r.output.indexOf('=== card log'));
      expect(irqs, r.output).to.match(/pciem-MSI\s.*protopciem/);
      expect(r.output).to.match(/protopciem \S+: bound: \/dev\/protopciem, MSI irq \d+/);
      expect(r.output).to.match(/protopciem \S+: bound: \/dev\/protopciem, INTx irq \d+/);
      expect(r.output).to.match(/protopciem \S+: bound: \/dev\/protopciem2, MSI irq \d+/);
    });

    it(`every command (PROCESS_BUFFER, P2P between two cards too), frames, timeout, errors, removal, INTx, three cards, a dead card (${TESTS.length} tests)`,
      function () {
        expectSelftest(r, TESTS, { ordered: true });
      });

    it('logs card errors, timeouts and dead cards; dmesg stays clean: no oops, warning or hang', function () {
      const dmesg = r.output.slice(r.output.indexOf('=== dmesg'));
      expect(dmesg, 'dmesg').to.not.match(BAD_DMESG);
      expect(dmesg).to.match(/protopciem \S+: EXECUTE_CMDBUF failed: error code 6/);
      expect(dmesg).to.match(/protopciem \S+: P2P_WRITE failed: error code 6/);
      expect(dmesg).to.match(/protopciem \S+: ADD timed out after 2000 ms/);
      expect(dmesg).to.match(/protopciem \S+: card reads all-ones: taken for dead/);
      expect(dmesg).to.match(/protopciem \S+: card reads all-ones: not binding/);
    });
  });
}

after(function () {
  programs?.remove();
});
