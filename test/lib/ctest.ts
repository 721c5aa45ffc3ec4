// C test programs (kselftest-shaped: "ok"/"not ok" lines, then one
// "NAME: N passed, M failed" line), built with gcc and run from mocha.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { repoRoot } from './paths.js';

export interface CBuild {
  /** Sources, relative to the checkout (or absolute). */
  sources: string[];
  /** Include folders, relative to the checkout. */
  includes?: string[];
  /** Extra compiler flags (beyond -Wall -Wextra -Werror -O2). */
  flags?: string[];
  /** Libraries, e.g. '-lmsgpackc': after the sources, where the linker wants them. */
  libs?: string[];
}

/** Compiles a C program into `out`; fails the calling test with gcc's words. */
export function compileC(build: CBuild, out: string): void {
  const args = ['-Wall', '-Wextra', '-Werror', '-O2', ...(build.flags ?? [])];
  for (const inc of build.includes ?? []) args.push('-I', join(repoRoot, inc));
  args.push('-o', out, ...build.sources.map((s) => (isAbsolute(s) ? s : join(repoRoot, s))), ...(build.libs ?? []));
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  expect(r.error, 'gcc must be installed (build-essential)').to.equal(undefined);
  expect(r.stderr, 'gcc printed diagnostics').to.equal('');
  expect(r.status, 'gcc failed').to.equal(0);
}

/** A temporary folder of C programs built for one suite; remove() it when done. */
export class CPrograms {
  readonly dir: string;

  constructor(name: string) {
    this.dir = mkdtempSync(join(tmpdir(), `pciem-${name}-`));
  }

  /** Builds `name` in the folder and returns its path. */
  build(name: string, build: CBuild): string {
    const out = join(this.dir, name);
    compileC(build, out);
    return out;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** How the kselftest-shaped programs under kernel/tests/ are built. */
export function selftestBuild(source: string): CBuild {
  return { sources: [source], includes: ['kernel/include/uapi'], flags: ['-pthread'] };
}

/**
 * Registers a suite that builds a C test program and runs it: it must pass
 * every case, with at least `minCases` of them, and close with
 * "`summary`: N passed, 0 failed".
 */
export function cTestSuite(title: string, build: CBuild, summary: string, minCases: number): void {
  describe(title, function () {
    this.timeout(120_000);
    let dir = '';
    let binary = '';

    before(function () {
      dir = mkdtempSync(join(tmpdir(), `pciem-${summary}-`));
      binary = join(dir, `${summary}_test`);
    });

    after(function () {
      rmSync(dir, { recursive: true, force: true });
    });

    it('compiles with gcc -Wall -Wextra -Werror', function () {
      compileC(build, binary);
    });

    it(`passes every case, with at least ${minCases} of them`, function () {
      const r = spawnSync(binary, [], { encoding: 'utf8' });
      expect(r.error, 'the test program did not run').to.equal(undefined);
      const failures = r.stdout.split('\n').filter((line) => line.startsWith('not ok') || line.startsWith('#'));
      expect(failures, 'failing cases').to.deep.equal([]);
      expect(r.signal, 'the test program crashed').to.equal(null);
      expect(r.status).to.equal(0);
      const m = new RegExp(`^${summary}: (\\d+) passed, (\\d+) failed$`, 'm').exec(r.stdout);
      expect(m, 'summary line').to.not.equal(null);
      expect(Number(m?.[1])).to.be.at.least(minCases);
      expect(Number(m?.[2])).to.equal(0);
    });
  });
}
