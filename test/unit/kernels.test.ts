// scripts/kernels.sh: the cache front end the kernel build and the VM use.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

const kernels = join(repoRoot, 'scripts', 'kernels.sh');

describe('scripts/kernels.sh', function () {
  it('refuses an unknown kernel version', function () {
    const r = spawnSync(kernels, ['dir', '4.19'], { encoding: 'utf8' });
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.contain("unknown kernel '4.19'");
  });

  it('refuses an unknown subcommand with its usage', function () {
    const r = spawnSync(kernels, ['unpack'], { encoding: 'utf8' });
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.contain('usage:');
  });
});
