// The ProtoPCIem constants: proto/protopciem.json is the one source, the
// committed outputs of proto/gen/protopciem.ts are current, the C header
// and the TypeScript module say the same thing, upstream's values are kept,
// and the generator refuses a broken spec.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import {
  applyDocBlocks,
  headerPath,
  loadSpec,
  outputs,
  parseSpec,
  renderC,
  renderDocBlocks,
  type Spec,
  SpecError,
  specPath,
} from '../../proto/gen/protopciem.js';
import * as gen from '../../proto/generated/protopciem.js';
import { repoRoot } from '../lib/paths.js';

const rawSpec = (): Record<string, unknown> => JSON.parse(readFileSync(specPath, 'utf8')) as Record<string, unknown>;

function expectUnique(values: readonly (number | string)[], what: string): void {
  const dupes = values.filter((v, i) => values.indexOf(v) !== i);
  expect(dupes, `duplicate ${what}`).to.deep.equal([]);
}

describe('proto/protopciem.json and its generated outputs', function () {
  let spec: Spec;

  before(function () {
    spec = loadSpec();
  });

  describe('generated files', function () {
    it('are up to date with the generator (run: tsx proto/gen/protopciem.ts)', function () {
      for (const o of outputs(spec)) {
        const committed = readFileSync(o.path, 'utf8');
        expect(committed === o.content, `${relative(repoRoot, o.path)} is out of date`).to.equal(true);
      }
    });

    it('the generator\'s --check agrees', function () {
      const r = spawnSync(join(repoRoot, 'node_modules', '.bin', 'tsx'), ['proto/gen/protopciem.ts', '--check'], { cwd: repoRoot, encoding: 'utf8' });
      expect(r.stderr).to.equal('');
      expect(r.status).to.equal(0);
    });

    it('the C header and the TypeScript module carry the same values', function () {
      const names: [string, number][] = [
        ['SPEC_VERSION', gen.SPEC_VERSION_VALUE],
        ['PCI_VENDOR_ID', gen.PCI.vendorId],
        ['PCI_DEVICE_ID', gen.PCI.deviceId],
        ['BAR_REGS_SIZE', gen.BAR.REGS.size],
        ['BAR_MEM_SIZE', gen.BAR.MEM.size],
        ['CB_HDR_SIZE', gen.CmdbufHeader.size],
        ...Object.entries(gen.Const),
        ...Object.entries(gen.Reg).map(([k, v]): [string, number] => [`REG_${k}`, v]),
        ...Object.entries(gen.Bits).flatMap(([r, bits]) => Object.entries(bits).map(([b, v]): [string, number] => [`${r}_${b}`, v])),
        ...Object.entries(gen.Cmd).map(([k, v]): [string, number] => [`CMD_${k}`, v]),
        ...Object.entries(gen.Op).map(([k, v]): [string, number] => [`OP_${k}`, v]),
        ...Object.entries(gen.Err).map(([k, v]): [string, number] => [`ERR_${k}`, v]),
        ...Object.entries(gen.CmdbufHeader.fields).map(([k, f]): [string, number] => [`CB_HDR_${k}`, f.offset]),
        ...Object.entries(gen.CmdbufEntry).flatMap(([e, info]) => [
          [`CB_${e}_SIZE`, info.size] as [string, number],
          ...Object.entries(info.fields as Record<string, gen.FieldInfo>).map(([f, v]): [string, number] => [`CB_${e}_${f}`, v.offset]),
        ]),
      ];
      const dir = mkdtempSync(join(tmpdir(), 'pciem-proto-'));
      try {
        const src = join(dir, 'values.c');
        writeFileSync(src, [
          '#include <stdio.h>',
          '#include "protopciem_regs.h"',
          'static const char *const cmd_names[] = PROTOPCIEM_CMD_NAMES;',
          'int main(void)',
          '{',
          '\tunsigned i;',
          '\tfor (i = 0; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)',
          '\t\tif (cmd_names[i])',
          '\t\t\tprintf("name:%s %u\\n", cmd_names[i], i);',
          ...names.map(([n]) => `\tprintf("%s %lu\\n", "${n}", (unsigned long)(PROTOPCIEM_${n}));`),
          '\treturn 0;',
          '}',
          '',
        ].join('\n'));
        const bin = join(dir, 'values');
        // Plain C, pedantic: no extension the kernel or QEMU would not both accept.
        const cc = spawnSync('gcc', ['-std=c99', '-pedantic', '-Wall', '-Wextra', '-Werror', '-I', dirname(headerPath), '-o', bin, src], { encoding: 'utf8' });
        expect(cc.stderr, 'gcc diagnostics').to.equal('');
        expect(cc.status).to.equal(0);
        const out = spawnSync(bin, [], { encoding: 'utf8' }).stdout;
        const got = new Map(out.trim().split('\n').map((l) => l.split(' ') as [string, string]));
        for (const [n, v] of names) expect(Number(got.get(n)), n).to.equal(v);
        for (const [n, v] of Object.entries(gen.Cmd)) expect(Number(got.get(`name:${n}`)), `PROTOPCIEM_CMD_NAMES: ${n}`).to.equal(v);
        expect([...got.keys()].filter((k) => k.startsWith('name:'))).to.have.length(Object.keys(gen.Cmd).length);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('the C header has no includes and only #define / #ifndef lines outside comments', function () {
      const code = readFileSync(headerPath, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\\\n/g, ' ');
      for (const l of code.split('\n').filter((x) => x.trim() !== '')) {
        expect(l, 'header line').to.match(/^#(define|ifndef|endif)\b/);
      }
    });
  });

  describe('invariants', function () {
    it('register offsets, command numbers, opcodes and error codes are unique', function () {
      expectUnique(spec.registers.map((r) => r.offset), 'register offset');
      expectUnique(spec.registers.map((r) => r.name), 'register name');
      expectUnique(spec.commands.map((c) => c.value), 'command number');
      expectUnique(spec.entries.map((e) => e.opcode), 'opcode');
      expectUnique(spec.errors.map((e) => e.value), 'error code');
      for (const r of spec.registers) expectUnique(r.bits.map((b) => b.bit), `${r.name} bit`);
    });

    it('every register is 32-bit aligned in BAR0; extensions live at EXT_BASE and up', function () {
      for (const r of spec.registers) {
        expect(r.offset % 4, r.name).to.equal(0);
        expect(r.offset + 4, r.name).to.be.at.most(gen.BAR.REGS.size);
        expect(r.offset >= gen.Const.EXT_BASE, `${r.name}: in the extension block`).to.equal(!r.upstream);
      }
      expect(gen.Reg.ID, 'ID where the first increment put it').to.equal(0x1000);
      expect(gen.Reg.VERSION).to.equal(0x1004);
    });

    it('ID and VERSION read what the spec says', function () {
      const reset = (n: gen.RegName): number | undefined => gen.REGISTERS.find((r) => r.name === n)?.reset;
      expect(reset('ID')).to.equal(((gen.PCI.vendorId << 16) | gen.PCI.deviceId) >>> 0);
      expect(reset('VERSION')).to.equal(((gen.SPEC_VERSION.major << 16) | gen.SPEC_VERSION.minor) >>> 0);
      expect(gen.SPEC_VERSION).to.deep.equal({ major: 1, minor: 0 });
      expect(readFileSync(join(repoRoot, 'docs', 'protopciem.md'), 'utf8')).to.contain('Spec version **1.0**');
    });

    it('command-buffer fields are naturally aligned and fit their entry', function () {
      for (const e of spec.entries) {
        for (const f of e.fields) {
          const size = { u8: 1, u16: 2, u32: 4 }[f.type];
          expect(f.offset % size, `${e.name}.${f.name}`).to.equal(0);
          expect(f.offset + size, `${e.name}.${f.name}`).to.be.at.most(e.size);
        }
      }
    });

    it('keeps upstream ProtoPCIem\'s identity, registers, bits and commands', function () {
      // From upstream's protopciem_device.h and its driver, literally.
      expect(gen.PCI.vendorId).to.equal(0x1f0c);
      expect(gen.PCI.deviceId).to.equal(0x0001);
      expect(gen.PCI.classCode).to.equal(0x0b);
      expect(gen.BAR.REGS).to.deep.include({ index: 0, size: 64 * 1024, prefetchable: false });
      expect(gen.BAR.MEM).to.deep.include({ index: 2, size: 1024 * 1024, prefetchable: true });
      expect(gen.Reg).to.deep.include({
        CONTROL: 0x00, STATUS: 0x04, CMD: 0x08, DATA: 0x0c, RESULT_LO: 0x10, RESULT_HI: 0x14,
        DMA_SRC_LO: 0x20, DMA_SRC_HI: 0x24, DMA_DST_LO: 0x28, DMA_DST_HI: 0x2c, DMA_LEN: 0x30, DMA_FLAGS: 0x34,
      });
      expect(gen.Bits.CONTROL).to.deep.include({ ENABLE: 1 << 0, RESET: 1 << 1 });
      expect(gen.Bits.STATUS).to.deep.include({ BUSY: 1 << 0, DONE: 1 << 1, ERROR: 1 << 2 });
      expect(gen.Cmd).to.deep.equal({
        ADD: 0x01, MULTIPLY: 0x02, XOR: 0x03, PROCESS_BUFFER: 0x04, EXECUTE_CMDBUF: 0x05, DMA_FRAME: 0x06, P2P_READ: 0x07, P2P_WRITE: 0x08,
      });
      expect(gen.Const).to.deep.include({ FB_WIDTH: 640, FB_HEIGHT: 480, FB_BPP: 3, FB_PITCH: 1920, FB_SIZE: 640 * 480 * 3 });
      expect(gen.Const.CMDBUF_MAX, "the driver's 4 MiB command buffer fits").to.equal(4 * 1024 * 1024);
    });

    it('keeps upstream\'s command-buffer layout (protopciem_cmds.h, packed structs)', function () {
      expect(gen.Op).to.deep.equal({ NOP: 0x00, CLEAR: 0x01, DRAW_LINE: 0x02, BLIT_RECT: 0x03 });
      expect(gen.CmdbufHeader).to.deep.equal({
        size: 8,
        fields: { OPCODE: { offset: 0, type: 'u16' }, RESERVED: { offset: 2, type: 'u16' }, LENGTH: { offset: 4, type: 'u32' } },
      });
      const layout = (e: keyof typeof gen.CmdbufEntry): Record<string, [number, string]> =>
        Object.fromEntries(Object.entries(gen.CmdbufEntry[e].fields as Record<string, gen.FieldInfo>).map(([k, f]) => [k, [f.offset, f.type]]));
      expect(gen.CmdbufEntry.CLEAR.size).to.equal(12);
      expect(layout('CLEAR')).to.deep.equal({ R: [8, 'u8'], G: [9, 'u8'], B: [10, 'u8'], A: [11, 'u8'] });
      expect(gen.CmdbufEntry.DRAW_LINE.size).to.equal(20);
      expect(layout('DRAW_LINE')).to.deep.equal({
        X0: [8, 'u16'], Y0: [10, 'u16'], X1: [12, 'u16'], Y1: [14, 'u16'], R: [16, 'u8'], G: [17, 'u8'], B: [18, 'u8'], A: [19, 'u8'],
      });
      expect(gen.CmdbufEntry.BLIT_RECT.size).to.equal(16);
      expect(layout('BLIT_RECT')).to.deep.equal({ X: [8, 'u16'], Y: [10, 'u16'], WIDTH: [12, 'u16'], HEIGHT: [14, 'u16'] });
      expect(gen.CmdbufEntry.BLIT_RECT.trailer).to.deep.equal({ name: 'PIXELS', offset: 16 });
    });
  });

  describe('the generator refuses a broken spec', function () {
    const broken = (mutate: (s: Record<string, unknown>) => void, message: RegExp): void => {
      const s = rawSpec();
      mutate(s);
      // Some checks only the rendering can make (clashing C names).
      expect(() => renderC(parseSpec(JSON.stringify(s)))).to.throw(SpecError, message);
    };
    type Row = Record<string, unknown>;
    const rows = (s: Record<string, unknown>, key: string): Row[] => s[key] as Row[];
    const row = (s: Record<string, unknown>, key: string, name: string): Row => {
      const r = rows(s, key).find((x) => x.name === name);
      if (r === undefined) throw new Error(`no ${name} in ${key}`);
      return r;
    };

    it('not JSON, or not the right shape', function () {
      expect(() => parseSpec('{')).to.throw(SpecError, /not JSON/);
      expect(() => parseSpec('[]')).to.throw(SpecError, /expected an object/);
      broken((s) => delete s.registers, /registers: expected an array/);
      broken((s) => (row(s, 'registers', 'DATA').offset = '0x0C'), /lower-case/);
      broken((s) => (row(s, 'registers', 'DATA').offset = -4), /integer/);
      broken((s) => (row(s, 'registers', 'DATA').access = 'RX'), /access/);
      broken((s) => (row(s, 'registers', 'DATA').name = 'data'), /UPPER_CASE/);
    });

    it('a duplicate register offset, command number, opcode or error code', function () {
      broken((s) => (row(s, 'registers', 'DATA').offset = '0x008'), /duplicate register offset: 0x8/);
      broken((s) => (row(s, 'commands', 'XOR').value = '0x01'), /duplicate command number/);
      broken((s) => (((s.cmdbuf as Row).entries as Row[])[1] as Row).opcode = '0x00', /duplicate command-buffer opcode/);
      broken((s) => (row(s, 'errors', 'COORDS').value = 1), /duplicate error code/);
      broken((s) => ((row(s, 'registers', 'STATUS').bits as Row[])[3] as Row).bit = 0, /duplicate bit number in STATUS/);
    });

    it('a misplaced register or field', function () {
      broken((s) => (row(s, 'registers', 'DATA').offset = '0x00e'), /not 32-bit aligned/);
      broken((s) => (row(s, 'registers', 'QUEUE_LEVEL').offset = '0x040'), /extension register below EXT_BASE/);
      broken((s) => (row(s, 'registers', 'DATA').offset = '0x2000'), /upstream register inside the extension block/);
      broken((s) => (row(s, 'registers', 'FB_FORMAT').offset = '0x10000'), /outside BAR0/);
      broken((s) => {
        const f = (((s.cmdbuf as Row).entries as Row[])[2] as Row).fields as Row[];
        f.unshift({ name: 'PAD', type: 'u8' });
      }, /not naturally aligned/);
    });

    it('values that contradict each other', function () {
      broken((s) => ((s.version as Row).minor = 1), /VERSION: reset 0x10000 is not the spec version/);
      broken((s) => (row(s, 'registers', 'ID').reset = '0x1f0c0002'), /vendor << 16 \| device/);
      broken((s) => (row(s, 'registers', 'CAPS').reset = '0x00000007'), /not the OR of its bits/);
      broken((s) => (row(s, 'commands', 'ADD').value = 0), /0 is not a command number/);
      broken((s) => (row(s, 'registers', 'QUEUE_DEPTH').reset = 'NO_SUCH'), /no constant named NO_SUCH/);
      broken((s) => (rows(s, 'errors')[0] as Row).name = 'OK', /code 0 must be NONE/);
    });

    it('C names that would clash', function () {
      // A constant named like a register's bit would be #defined twice.
      broken((s) => rows(s, 'constants').push({ name: 'STATUS_BUSY', value: 1, summary: 'clash' }), /#defined as PROTOPCIEM_STATUS_BUSY/);
    });

    it('a document without its generated blocks, or with unknown ones', function () {
      const blocks = renderDocBlocks(spec);
      expect(() => applyDocBlocks('no markers', blocks)).to.throw(SpecError, /no generated block for/);
      const all = Object.keys(blocks).map((k) => `<!-- generated:${k} -->\n<!-- /generated:${k} -->`).join('\n');
      expect(() => applyDocBlocks(`${all}\n<!-- generated:bogus -->\nx\n<!-- /generated:bogus -->`, blocks)).to.throw(SpecError, /unknown generated block 'bogus'/);
      expect(applyDocBlocks(all, blocks)).to.contain(blocks.registers);
    });
  });
});
