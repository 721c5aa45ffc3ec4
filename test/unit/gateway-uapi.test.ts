// gateway/src/pciem/uapi.ts against the real header: a C program generated
// from the TypeScript layout table prints what the compiler says of every
// struct size, field offset and ioctl number; they must agree.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DMA_DIR, DMA_MAP, IOCTL, RING, S } from '../../gateway/src/pciem/uapi.js';
import { PciemDevice } from '../../gateway/src/pciem/device.js';
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

  it('PciemDevice.dmaReadable follows pciem_dma_covered: adjacent mappings chain, the furthest reaching wins, dma_map_resource ones do not count', function () {
    const m = (iova: number, size: number, kind: number = DMA_MAP.COHERENT) => ({ iova: BigInt(iova), size: BigInt(size), kind, dir: DMA_DIR.BIDIRECTIONAL });
    const maps = [m(0x1000, 0x1000), m(0x1800, 0x1000, DMA_MAP.SINGLE), m(0x2800, 0x800, DMA_MAP.SG), m(0x3000, 0x1000, DMA_MAP.RESOURCE), m(0x8000, 0x100)];
    expect(PciemDevice.dmaReadable(maps, 0x1000n, 0x10_000)).to.equal(0x2000);
    expect(PciemDevice.dmaReadable(maps, 0x1ffen, 4)).to.equal(4);
    expect(PciemDevice.dmaReadable(maps, 0x2fffn, 100)).to.equal(1);
    expect(PciemDevice.dmaReadable(maps, 0x3000n, 100)).to.equal(0);
    expect(PciemDevice.dmaReadable(maps, 0x80f0n, 0x20)).to.equal(0x10);
    expect(PciemDevice.dmaReadable(maps, 0xfffn, 2)).to.equal(0);
    expect(PciemDevice.dmaReadable([], 0x1000n, 1)).to.equal(0);
  });
});
