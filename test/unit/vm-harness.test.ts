// The VM harness's own checks: bad input is refused before anything boots.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';
import { runHarness, vmArgs } from '../lib/vm.js';

describe('guests/vm/run input checks', function () {
  it('prints usage for --help and exits 0', async function () {
    const r = await runHarness(['--help']);
    expect(r.code).to.equal(0);
    expect(r.output).to.match(/^usage: guests\/vm\/run/);
  });

  it('refuses an unknown --kernel, naming the supported ones', async function () {
    const r = await runHarness(['--kernel', '5.10', '--', 'true']);
    expect(r.code).to.equal(125);
    expect(r.harness).to.contain("unknown --kernel '5.10'").and.contain('6.12').and.contain('6.1');
  });

  for (const [flag, value] of [['--timeout', 'soon'], ['--timeout', '0'], ['--memory', '2G'], ['--cpus', '-1'], ['--accel', 'hvf'], ['--share', '/nonexistent-folder'], ['--share', '/tmp/a b'], ['--forward', '5900'], ['--forward', 'vnc:5900']] as const) {
    it(`refuses ${flag} ${value}`, async function () {
      const r = await runHarness([flag, value, '--', 'true']);
      expect(r.code).to.equal(125);
      expect(r.harness).to.contain(flag);
    });
  }

  it('refuses an unknown option', async function () {
    const r = await runHarness(['--frobnicate', '--', 'true']);
    expect(r.code).to.equal(125);
    expect(r.harness).to.contain("unknown option '--frobnicate'");
  });

  it('refuses a missing command', async function () {
    const r = await runHarness(['--kernel', '6.12']);
    expect(r.code).to.equal(125);
    expect(r.harness).to.contain('no command given');
  });

  it('refuses an option with no value', async function () {
    const r = await runHarness(['--timeout']);
    expect(r.code).to.equal(125);
    expect(r.harness).to.contain('--timeout needs a value');
  });

  it('reports a missing kernel cache with the command that fills it', function () {
    const r = spawnSync(join(repoRoot, 'guests', 'vm', 'run'), ['--', 'true'], {
      env: { ...process.env, PCIEM_CACHE: join(repoRoot, 'no-such-cache') },
      encoding: 'utf8',
    });
    expect(r.status).to.equal(125);
    expect(r.stderr).to.contain('is not in the cache').and.contain("make deps");
  });
});

describe('vmArgs', function () {
  it('passes options before the separator and the command verbatim after it', function () {
    expect(vmArgs(['sh', '-c', 'echo "a b"'], { kernel: '6.1', timeoutSec: 30, memoryMiB: 512, cpus: 1, append: 'x=1' })).to.deep.equal([
      '--kernel', '6.1', '--timeout', '30', '--memory', '512', '--cpus', '1', '--append', 'x=1', '--', 'sh', '-c', 'echo "a b"',
    ]);
  });

  it('rejects an empty command', function () {
    expect(() => vmArgs([])).to.throw(TypeError, /empty command/);
  });
});
