// kernel/pciem_insn.c: the MMIO instruction decoder/emulator, built for
// userspace with kernel/tests/insn_test.c and run. The C program checks the
// decoder against its table and, on this x86-64 machine, against the CPU.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

const kernelDir = join(repoRoot, 'kernel');

describe('kernel/pciem_insn.c (userspace build)', function () {
  this.timeout(120_000);

  let dir: string;
  let binary: string;

  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-insn-'));
    binary = join(dir, 'insn_test');
  });

  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('compiles with gcc -Wall -Wextra -Werror', function () {
    const r = spawnSync(
      'gcc',
      [
        '-Wall',
        '-Wextra',
        '-Werror',
        '-O2',
        '-o',
        binary,
        join(kernelDir, 'tests', 'insn_test.c'),
        join(kernelDir, 'pciem_insn.c'),
      ],
      { encoding: 'utf8' },
    );
    expect(r.error, 'gcc must be installed to test the decoder').to.equal(undefined);
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
  });

  it('passes every case, with at least 60 of them', function () {
    const r = spawnSync(binary, [], { encoding: 'utf8' });
    expect(r.error, 'the test program did not run').to.equal(undefined);
    const failures = r.stdout
      .split('\n')
      .filter((line) => line.startsWith('not ok') || line.startsWith('#'));
    expect(failures, 'failing cases').to.deep.equal([]);
    expect(r.signal, 'the test program crashed').to.equal(null);
    expect(r.status).to.equal(0);
    const summary = /^insn: (\d+) passed, (\d+) failed$/m.exec(r.stdout);
    expect(summary, 'summary line').to.not.equal(null);
    expect(Number(summary?.[1])).to.be.at.least(60);
    expect(Number(summary?.[2])).to.equal(0);
  });
});
