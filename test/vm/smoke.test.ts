// VM smoke tests: the harness boots Debian's kernels for real, and a module
// built from kernel/ loads into the 6.12 guest.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { kernelModule, kernelRelease, kernelVersions, repoRoot } from '../lib/paths.js';
import { vmRun, vmRunScript } from '../lib/vm.js';

const BAD_DMESG = /Oops|BUG:|WARNING:|Call Trace|general protection/;

/**
 * QEMUs the harness left behind: VMs whose job folder the harness has
 * already removed. (VMs of other runs on the machine still have theirs.)
 */
function qemuJobs(): string[] {
  let lines: string[];
  try {
    lines = execFileSync('pgrep', ['-af', 'pciem\\.job='], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return lines.filter((l) => {
    const job = /pciem\.job=(\S+)/.exec(l)?.[1];
    return job !== undefined && !existsSync(job);
  });
}

describe('VM harness (boots for real)', function () {
  this.timeout(180_000);

  for (const kernel of kernelVersions) {
    it(`boots Debian ${kernel} and runs a command as root`, async function () {
      const r = await vmRun(['sh', '-c', 'uname -r; id -u'], { kernel });
      expect(r.code, r.harness).to.equal(0);
      const [release, uid] = r.output.trim().split('\n');
      console.log(`      guest kernel release: ${release}`);
      expect(release).to.equal(kernelRelease(kernel));
      expect(uid).to.equal('0');
    });
  }

  it('passes the command exit status through', async function () {
    expect((await vmRun(['false'])).code).to.equal(1);
    expect((await vmRun(['sh', '-c', 'exit 42'])).code).to.equal(42);
  });

  it('runs in the caller directory, with arguments intact, over a writable overlay', async function () {
    const r = await vmRunScript('pwd; printf "<%s>" "$@"; echo hi > /usr/pciem-overlay-test && cat /usr/pciem-overlay-test');
    expect(r.code, r.harness).to.equal(0);
    expect(r.output).to.contain(repoRoot).and.contain('hi');
  });

  it('shares a host folder read-write (--share) and forwards a host port into the guest (--forward)', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'pciem-share-'));
    try {
      const port = 20000 + (process.pid % 20000);
      const vm = vmRunScript(`echo from-guest > ${dir}/out
timeout 60 node -e "const srv = require('net').createServer((s) => { s.end('hello from the guest'); srv.close(); }).listen(7777)"`, { share: dir, forward: [[port, 7777]], timeoutSec: 120 });
      let got = '';
      const deadline = Date.now() + 60_000;
      while (!got && Date.now() < deadline) {
        got = await new Promise<string>((resolve) => {
          const s = connect(port, '127.0.0.1');
          let data = '';
          s.on('data', (b: Buffer) => (data += b.toString()));
          s.on('end', () => resolve(data));
          s.on('error', () => resolve(''));
        });
        if (!got) await new Promise((r) => setTimeout(r, 500));
      }
      const r = await vm;
      expect(r.code, r.output + r.harness).to.equal(0);
      expect(got).to.equal('hello from the guest');
      expect(readFileSync(join(dir, 'out'), 'utf8')).to.equal('from-guest\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('streams large output byte-exact', async function () {
    const r = await vmRun(['seq', '1', '100000']);
    expect(r.code).to.equal(0);
    const expected = Array.from({ length: 100000 }, (_, i) => String(i + 1)).join('\n') + '\n';
    expect(r.output === expected, 'seq output differs').to.equal(true);
  });

  it('kills a command that outlives --timeout, exits 124 and leaves no QEMU behind', async function () {
    const r = await vmRun(['sleep', '600'], { timeoutSec: 10 });
    expect(r.code).to.equal(124);
    expect(r.harness).to.contain('timed out after 10 s');
    expect(qemuJobs()).to.deep.equal([]);
  });

  it('reports a VM that cannot boot with the console tail, exit 125, no QEMU behind', async function () {
    // No init to run: the kernel panics during boot.
    const r = await vmRun(['true'], { append: 'rdinit=/no-such-init', timeoutSec: 60 });
    expect(r.code).to.equal(125);
    expect(r.harness).to.contain('without running the command').and.match(/Console(, from the first crash line| tail):/);
    expect(r.harness).to.match(/Kernel panic|No working init/);
    // A VM that dies before the command starts is booted once more, no more.
    expect(r.harness.match(/booting once more/g)).to.have.length(1);
    expect(qemuJobs()).to.deep.equal([]);
  });

  it('reports a guest kernel crash during the command with the panic, exit 125, and does not run it again', async function () {
    const r = await vmRun(['sh', '-c', 'echo ran-once; echo c > /proc/sysrq-trigger']);
    expect(r.code, r.harness).to.equal(125);
    expect(r.harness, r.harness).to.contain('died while the command ran').and.contain('from the first crash line');
    expect(r.harness).to.match(/Kernel panic - not syncing: sysrq triggered crash/);
    // The first boot may die before the command starts (the rare TCG crash
    // guests/vm/run boots once more for); what must never be booted again is
    // a VM that died while the command ran. So: at most one retry, and the
    // console that retry reports is not the command's crash.
    const [beforeFinal] = r.harness.split('died while the command ran');
    const retries = beforeFinal!.split('booting once more');
    expect(retries.length - 1, r.harness).to.be.at.most(1);
    expect(beforeFinal, r.harness).to.not.contain('sysrq triggered crash');
    expect(r.output.match(/ran-once/g), r.output).to.have.length(1);
    expect(qemuJobs()).to.deep.equal([]);
  });
});

describe('pciem.ko module lifecycle in the 6.12 guest', function () {
  this.timeout(180_000);

  it('loads, creates /dev/pciem, answers ioctls with ENOTTY, unloads, dmesg clean', async function () {
    const ko = relative(repoRoot, kernelModule('6.12', 'pciem'));
    const r = await vmRunScript(`
insmod ${ko}
grep -E '^pciem ' /proc/modules
test -c /dev/pciem && echo "dev: $(stat -c '%F %a' /dev/pciem)"
python3 -c '
import errno, fcntl, os
fd = os.open("/dev/pciem", os.O_RDWR)
try:
    fcntl.ioctl(fd, 0xAF00)
except OSError as e:
    print("ioctl:", errno.errorcode[e.errno])
'
rmmod pciem
test ! -e /dev/pciem && echo "removed"
dmesg
`);
    expect(r.code, r.output + r.harness).to.equal(0);
    console.log(`      ${r.output.split('\n').find((l) => l.startsWith('pciem ')) ?? ''}`);
    expect(r.output).to.match(/^pciem \d+ 0 - Live/m);
    expect(r.output).to.contain('dev: character special file 600');
    expect(r.output).to.contain('ioctl: ENOTTY');
    expect(r.output).to.contain('removed');
    expect(r.output).to.match(/pciem: version \S+ loaded/);
    expect(r.output).to.not.match(BAD_DMESG);
  });
});
