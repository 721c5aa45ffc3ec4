// pciem_trace in the VM: kernel/tests/trace_test.c checks, from inside the
// guest kernel, that every access through every kind of mapping of a traced
// range reaches the ops once and in order, that what cannot be emulated is
// refused without an oops, and that removal and unmapping are clean. This
// suite loads it into each Debian kernel and reads its verdict from dmesg.
import { expect } from 'chai';
import { relative } from 'node:path';
import { type KernelVersion, kernelModule, kernelVersions, repoRoot } from '../lib/paths.js';
import { vmRunScript } from '../lib/vm.js';

const BAD_DMESG = /BUG:|Oops|WARNING:|Call Trace|general protection/;
/** The number of checks trace_test.c runs; a change there changes this. */
const CHECKS = 41;

interface TraceRun {
  insmod: number;
  rmmod: number;
  dmesg: string;
}

async function runTraceTest(kernel: KernelVersion): Promise<TraceRun> {
  const ko = relative(repoRoot, kernelModule(kernel, 'tests/pciem_trace_test'));
  // A fresh guest: pciem.ko, which must never be loaded alongside this
  // module (both hook the same kernel functions), is not loaded.
  const r = await vmRunScript(
    `
status=0; insmod ${ko} || status=$?
echo "insmod-status: $status"
if [ "$status" -eq 0 ]; then status=0; rmmod pciem_trace_test || status=$?; echo "rmmod-status: $status"; fi
echo "--- dmesg"
dmesg
`,
    { kernel },
  );
  expect(r.code, r.output + r.harness).to.equal(0);
  const status = (name: string): number => {
    const m = new RegExp(`^${name}-status: (\\d+)$`, 'm').exec(r.output);
    return m ? Number(m[1]) : -1;
  };
  return { insmod: status('insmod'), rmmod: status('rmmod'), dmesg: r.output.slice(r.output.indexOf('--- dmesg')) };
}

for (const kernel of kernelVersions) {
  describe(`pciem_trace in the Debian ${kernel} guest`, function () {
    this.timeout(300_000);
    let run: TraceRun;

    before(async function () {
      run = await runTraceTest(kernel);
    });

    it('loads the test module: every check passes', function () {
      const failed = run.dmesg.split('\n').filter((l) => /pciem_trace_test: not ok /.test(l));
      expect(failed, run.dmesg).to.deep.equal([]);
      expect(run.insmod, run.dmesg).to.equal(0);
      const summary = /pciem_trace_test: (\d+) passed, (\d+) failed/.exec(run.dmesg);
      expect(summary, 'no summary line in dmesg').to.not.equal(null);
      expect(Number(summary?.[1])).to.equal(CHECKS);
      expect(Number(summary?.[2])).to.equal(0);
      const timing = /pciem_trace_test: # (emulated writel: .*)/.exec(run.dmesg);
      if (timing) console.log(`      ${timing[1]}`);
    });

    it('unloads, and pciem_trace_exit removes the range left registered', function () {
      expect(run.rmmod, run.dmesg).to.equal(0);
      expect(run.dmesg).to.match(/pciem_trace_test: trace: range \S+ \(0x1000 bytes\) still registered at exit: removed/);
    });

    it('leaves dmesg clean: no oops, BUG, WARNING or call trace', function () {
      expect(run.dmesg).to.not.match(BAD_DMESG);
    });
  });
}
