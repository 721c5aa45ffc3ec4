// The QEMU we build, for real: our card on -machine x-remote, -machine none,
// VNC, QMP and the card's registers over vfio-user (qemu-plugin/tests/smoke.sh).
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

describe('QEMU build with our devices', function () {
  this.timeout(600_000);
  let qemu = '';

  before(function () {
    // A no-op in seconds when the build tree is current.
    qemu = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  });

  it('build.sh prints the path of an executable qemu-system-x86_64 10.0', function () {
    expect(qemu).to.match(/\/qemu-system-x86_64$/);
    const version = execFileSync(qemu, ['--version'], { encoding: 'utf8' });
    expect(version).to.match(/QEMU emulator version 10\.0\.\d+/);
  });

  it('has the machines and devices the product needs', function () {
    const machines = execFileSync(qemu, ['-machine', 'help'], { encoding: 'utf8' });
    expect(machines).to.match(/^x-remote\s/m).and.match(/^none\s/m);
    const devices = execFileSync(qemu, ['-machine', 'x-remote', '-device', 'help'], { encoding: 'utf8' });
    expect(devices).to.contain('name "protopciem"').and.contain('name "edu"');
  });

  it('passes the smoke test: x-remote card, machine none, VNC, QMP, registers', function () {
    const r = spawnSync(join(repoRoot, 'qemu-plugin', 'tests', 'smoke.sh'), [qemu], { encoding: 'utf8' });
    process.stderr.write(r.stderr.trimEnd().replace(/^/gm, '      ') + '\n');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.contain('PASS: all QEMU smoke checks passed');
  });
});
