// kernel/pciem_config.c: the config-space emulation (RO/RW/W1C masks, BAR
// sizing, capability chains, the builder's validation), built for userspace
// with kernel/tests/config_test.c and run.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

const kernelDir = join(repoRoot, 'kernel');

describe('kernel/pciem_config.c (userspace build)', function () {
  this.timeout(120_000);

  let dir: string;
  let binary: string;

  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'pciem-config-'));
    binary = join(dir, 'config_test');
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
        join(kernelDir, 'tests', 'config_test.c'),
        join(kernelDir, 'pciem_config.c'),
      ],
      { encoding: 'utf8' },
    );
    expect(r.error, 'gcc must be installed to test the config space').to.equal(undefined);
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
  });

  it('passes every case, with at least 350 of them', function () {
    const r = spawnSync(binary, [], { encoding: 'utf8' });
    expect(r.error, 'the test program did not run').to.equal(undefined);
    const failures = r.stdout
      .split('\n')
      .filter((line) => line.startsWith('not ok') || line.startsWith('#'));
    expect(failures, 'failing cases').to.deep.equal([]);
    expect(r.signal, 'the test program crashed').to.equal(null);
    expect(r.status).to.equal(0);
    const summary = /^config: (\d+) passed, (\d+) failed$/m.exec(r.stdout);
    expect(summary, 'summary line').to.not.equal(null);
    expect(Number(summary?.[1])).to.be.at.least(350);
    expect(Number(summary?.[2])).to.equal(0);
  });
});
