// make demo's own checks (scripts/demo.sh): bad settings and a HOST=1 this
// machine cannot honour are refused with the reason before anything is
// installed, built or loaded. The demo itself runs in `make demo`; the chain
// it drives is the one test/vm/e2e.test.ts and doom.test.ts prove.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';

function demo(env: Record<string, string>, asUser?: number): { code: number | null; err: string } {
  if (asUser === undefined) {
    const r = spawnSync(join(repoRoot, 'scripts', 'demo.sh'), [], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, err: r.stderr };
  }
  // Another user may not reach the checkout (a clone under a 0700 mktemp
  // folder): it runs the same two scripts from a folder anyone can read.
  const top = mkdtempSync(join(tmpdir(), 'pciem-demo-user-'));
  try {
    mkdirSync(join(top, 'scripts'));
    for (const f of ['demo.sh', 'lib.sh']) copyFileSync(join(repoRoot, 'scripts', f), join(top, 'scripts', f));
    chmodSync(join(top, 'scripts', 'demo.sh'), 0o755);
    chmodSync(join(top, 'scripts'), 0o755);
    chmodSync(top, 0o755);
    const r = spawnSync('setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', join(top, 'scripts', 'demo.sh')],
      { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
    return { code: r.status, err: r.stderr };
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
}

describe('make demo: settings checked before anything runs', function () {
  const cases: [Record<string, string>, RegExp][] = [
    [{ HOST: 'yes' }, /HOST must be 0 .* or 1 .*, not 'yes'/],
    [{ DEMO_VNC_PORT: '80' }, /DEMO_VNC_PORT must be a port number from 5900 to 65535 .*, not '80'/],
    [{ DEMO_VNC_PORT: 'vnc' }, /DEMO_VNC_PORT .* not 'vnc'/],
    [{ DEMO_DASHBOARD_PORT: '70000' }, /DEMO_DASHBOARD_PORT must be a port number from 1 to 65535, not '70000'/],
    [{ DEMO_DASHBOARD_PORT: '5900' }, /DEMO_DASHBOARD_PORT and DEMO_VNC_PORT are both 5900/],
    [{ DEMO_SECONDS: '0' }, /DEMO_SECONDS must be a number of seconds, not '0'/],
  ];
  for (const [env, message] of cases) {
    it(`refuses ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')}`, function () {
      const r = demo(env);
      expect(r.code, r.err).to.equal(1);
      expect(r.err).to.match(message);
      expect(r.err, 'nothing started').not.to.contain('1/5');
    });
  }

  describe('HOST=1 (the chain on this machine\'s kernel)', function () {
    let modules: string;
    before(function () {
      modules = mkdtempSync(join(tmpdir(), 'pciem-modules-'));
    });
    after(function () {
      rmSync(modules, { recursive: true, force: true });
    });

    it('needs root', function () {
      const r = demo({ HOST: '1', PCIEM_HOST_MODULES: modules }, 65534);
      expect(r.code, r.err).to.equal(1);
      expect(r.err).to.contain("HOST=1 loads pciem.ko into this machine's kernel: run it as root");
    });

    it("needs the running kernel's headers, and names the package", function () {
      const release = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
      const r = demo({ HOST: '1', PCIEM_HOST_MODULES: modules });
      expect(r.code, r.err).to.equal(1);
      expect(r.err).to.contain(`${modules}/${release}/build is missing (Debian: apt install linux-headers-${release})`);
      expect(r.err, 'nothing built').not.to.contain('1/5');
    });
  });
});
