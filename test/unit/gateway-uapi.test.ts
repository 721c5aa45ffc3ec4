// gateway/src/pciem/uapi.ts against the real header: a C program generated
// from the TypeScript layout table prints what the compiler says of every
// struct size, field offset and ioctl number; they must agree.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IOCTL, RING, S } from '../../gateway/src/pciem/uapi.js';
import { compileC } from '../lib/ctest.js';

describe('gateway/src/pciem/uapi.ts', function () {
  this.timeout(60_000);

  it('matches kernel/include/uapi/linux/pciem.h: sizes, offsets, ioctl numbers', function () {
    const lines: string[] = [];
    const expected: string[] = [];
    for (const s of Object.values(S)) {
      lines.push(`printf("size ${s.name} %zu\\n", sizeof(struct ${s.name}));`);
      expected.push(`size ${s.name} ${s.size}`);
      for (const [name, f] of Object.entries(s.fields)) {
        lines.push(`printf("offset ${s.name}.${name} %zu\\n", offsetof(struct ${s.name}, ${name}));`);
        expected.push(`offset ${s.name}.${name} ${f.offset}`);
      }
    }
    for (const [name, value] of Object.entries(IOCTL)) {
      lines.push(`printf("ioctl ${name} %lu\\n", (unsigned long)PCIEM_IOCTL_${name});`);
      expected.push(`ioctl ${name} ${value}`);
    }
    lines.push('printf("ring tail %zu events %zu size %zu entries %d\\n", offsetof(struct pciem_shared_ring, tail), ' +
      'offsetof(struct pciem_shared_ring, events), sizeof(struct pciem_shared_ring), PCIEM_RING_SIZE);');
    expected.push(`ring tail ${RING.tail} events ${RING.events} size ${RING.size} entries ${RING.entries}`);

    const dir = mkdtempSync(join(tmpdir(), 'pciem-gw-uapi-'));
    try {
      const src = join(dir, 'layout.c');
      writeFileSync(src, `#include <stddef.h>\n#include <stdio.h>\n#include <linux/pciem.h>\nint main(void)\n{\n${lines.join('\n')}\nreturn 0;\n}\n`);
      compileC({ sources: [src], includes: ['kernel/include/uapi'] }, join(dir, 'layout'));
      const run = spawnSync(join(dir, 'layout'), { encoding: 'utf8' });
      expect(run.status).to.equal(0);
      expect(run.stdout.trim().split('\n')).to.deep.equal(expected);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
