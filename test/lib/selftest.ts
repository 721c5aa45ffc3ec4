// Verdicts of a kselftest-shaped program run in the VM (ok / not ok lines,
// then "selftest: N passed, M failed").
import { expect } from 'chai';
import type { VmResult } from './vm.js';

/**
 * Every named test passed and the run closed cleanly. A VM that died or
 * timed out fails first, with the harness's report (the guest console from
 * its first crash line), which is what explains it.
 */
export function expectSelftest(r: VmResult, names: readonly string[], opts: { ordered?: boolean } = {}): void {
  const out = r.output;
  if (r.code === 124 || r.code === 125) expect.fail(`the VM did not finish the run (exit ${r.code}):\n${r.harness}\n--- output ---\n${out}`);
  const failed = out.split('\n').filter((l) => l.startsWith('not ok'));
  expect(failed, out + r.harness).to.deep.equal([]);
  names.forEach((name, i) => {
    const n = opts.ordered === true ? String(i + 1) : '\\d+';
    expect(out, `test ${name} did not pass\n${r.harness}`).to.match(new RegExp(`^ok ${n} - ${name} `, 'm'));
  });
  expect(out, r.harness).to.match(new RegExp(`^selftest: ${names.length} passed, 0 failed$`, 'm'));
  expect(r.code, out + r.harness).to.equal(0);
}
