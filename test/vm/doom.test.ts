// DOOM end to end in the 6.12 VM (issue 8): Debian's unmodified
// chocolate-doom plays `-timedemo demo1`, every frame going protopciem.ko ->
// pciem.ko -> gateway -> QEMU card -> display. The hashes of the frames the
// card showed (its frame log) must equal the reference sequence from file
// mode — every frame, byte-exact, none missing, none duplicated — and the
// final screendump must be the last reference frame.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../lib/paths.js';
import { chainEnv, vmRunJson } from '../lib/vm.js';

describe('DOOM through the card in the 6.12 VM', function () {
  this.timeout(1_800_000);
  let qemu = '';

  before(function () {
    qemu = execFileSync(join(repoRoot, 'qemu-plugin', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    execFileSync('make', ['--no-print-directory', 'doom'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
  });

  it('-timedemo demo1: every frame the card showed is the reference frame, in order; the last screendump is the last frame', async function () {
    const { res, output, dmesgClean } = await vmRunJson(`${chainEnv(qemu, { DOOM_RUN: join(repoRoot, 'guests/doom/run-doom') })}
node --import tsx test/vm/scripts/doom-card.ts`, 'DOOM through the chain in the VM', { timeoutSec: 1700, memoryMiB: 3072, cpus: 2 });
    console.log(`      reference ${String(res.refFrames)} frames at ${String(res.fpsFile)} frames/s (${String(res.fileSeconds)} s); ` +
      `through the card ${String(res.shown)} frames at ${String(res.fpsCard)} frames/s (${String(res.cardSeconds)} s), TCG`);
    expect(res.refFrames).to.be.at.least(1531);
    expect(res).to.include({ shown: res.refFrames, shownVsRef: -1 });
    expect(res.lastShown).to.equal(res.lastRef);
    expect(dmesgClean, output).to.equal(true);
  });
});
