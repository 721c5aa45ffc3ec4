// The uAPI header keeps the compatible ABI (sizes, offsets, ioctl numbers).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

describe('include/uapi/linux/pciem.h', function () {
  it('matches the compatible ABI fact by fact, and compiles as plain C', function () {
    const dir = mkdtempSync(join(tmpdir(), 'pciem-uapi-'));
    try {
      const bin = join(dir, 'uapi_test');
      const cc = spawnSync('gcc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-I', join(repoRoot, 'kernel', 'include', 'uapi'),
        '-o', bin, join(repoRoot, 'kernel', 'tests', 'uapi_test.c')], { encoding: 'utf8' });
      expect(cc.error, 'gcc must be installed').to.equal(undefined);
      expect(cc.status, cc.stderr).to.equal(0);
      const run = spawnSync(bin, { encoding: 'utf8' });
      expect(run.status, run.stdout).to.equal(0);
      const m = /^uapi: (\d+) passed, (\d+) failed$/m.exec(run.stdout);
      expect(m, run.stdout).to.not.equal(null);
      expect(Number(m?.[1])).to.be.at.least(78);
      expect(Number(m?.[2])).to.equal(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
