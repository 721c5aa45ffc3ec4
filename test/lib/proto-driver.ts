// A ProtoPCIem driver in TypeScript for the FakeHost (no kernel): it plays
// what protopciem.ko does (docs/protopciem.md, "Programming sequence") on
// the fake host's BARs and DMA mappings, so the gateway + QEMU chain can be
// tested and measured without the VM.
import type { FakeHost } from '../../gateway/src/relay/fake-host.js';
import type { ModelSession } from '../../gateway/src/relay/session.js';
import { Bits, Cmd, Const, Reg } from '../../proto/generated/protopciem.js';

export const CMDBUF_IOVA = 0x1_0000_0000n;
export const FRAMES_IOVA = 0x2_0000_0000n;
export const PROCESS_IOVA = 0x3_0000_0000n;
const BAR0 = 0;
const PCI_CAP_ID_MSI = 0x05;

export interface Completion {
  status: number;
  result: bigint;
  errorCode: number;
  /** Microseconds from the doorbell to the interrupt. */
  us: number;
}

export class ProtoDriver {
  readonly cmdbuf: Uint8Array;
  readonly frames: Uint8Array;
  readonly process: Uint8Array;

  constructor(readonly host: FakeHost) {
    this.cmdbuf = host.map(CMDBUF_IOVA, Const.CMDBUF_MAX);
    this.frames = host.map(FRAMES_IOVA, 2 * Const.FB_SIZE);
    this.process = host.map(PROCESS_IOVA, 2 * Const.PROCESS_MAX);
  }

  /** Memory decoding and bus mastering on, MSI on (in the model's layout: the fake host passes offsets through). */
  init(session: ModelSession): void {
    this.host.driverConfigWrite(0x04, 2, 0x0006);
    const msi = session.modelCapabilities.get(PCI_CAP_ID_MSI);
    if (msi === undefined) throw new Error('the model has no MSI capability');
    this.host.driverConfigWrite(msi + 2, 2, 0x0001);
    this.write(Reg.CONTROL, Bits.CONTROL.RESET);
    this.write(Reg.CONTROL, Bits.CONTROL.ENABLE);
  }

  write(reg: number, value: number | bigint): void {
    this.host.driverWrite(BAR0, reg, 4, value);
  }

  async read(reg: number): Promise<number> {
    return Number(await this.host.driverRead(BAR0, reg, 4));
  }

  private dma(src: bigint, dst: bigint, len: number): void {
    this.write(Reg.DMA_SRC_LO, src & 0xffff_ffffn);
    this.write(Reg.DMA_SRC_HI, src >> 32n);
    this.write(Reg.DMA_DST_LO, dst & 0xffff_ffffn);
    this.write(Reg.DMA_DST_HI, dst >> 32n);
    this.write(Reg.DMA_LEN, len);
    this.write(Reg.DMA_FLAGS, 0);
  }

  /** Submits one command, waits for its interrupt, reads and clears the status. */
  async command(cmd: number, opts: { data?: number; src?: bigint; dst?: bigint; len?: number } = {}): Promise<Completion> {
    if (opts.data !== undefined) this.write(Reg.DATA, opts.data);
    if (opts.len !== undefined) this.dma(opts.src ?? 0n, opts.dst ?? 0n, opts.len);
    const irq = this.host.nextInterrupt(10_000);
    const t0 = process.hrtime.bigint();
    this.write(Reg.CMD, cmd);
    await irq;
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    const status = await this.read(Reg.STATUS);
    this.write(Reg.STATUS, 0);
    const lo = await this.read(Reg.RESULT_LO);
    const hi = await this.read(Reg.RESULT_HI);
    const errorCode = status & Bits.STATUS.ERROR ? await this.read(Reg.ERROR_CODE) : 0;
    if (errorCode) this.write(Reg.ERROR_CODE, 0);
    return { status, result: (BigInt(hi) << 32n) | BigInt(lo), errorCode, us };
  }

  arith(op: 'ADD' | 'MULTIPLY' | 'XOR', data: number): Promise<Completion> {
    return this.command(Cmd[op], { data });
  }

  /** Runs `bytes` as a command buffer. */
  executeCmdbuf(bytes: Uint8Array): Promise<Completion> {
    this.cmdbuf.set(bytes);
    return this.command(Cmd.EXECUTE_CMDBUF, { src: CMDBUF_IOVA, len: bytes.length });
  }

  /** Shows frame buffer `index` (fill `frames` first). */
  showFrame(index: 0 | 1): Promise<Completion> {
    return this.command(Cmd.DMA_FRAME, { src: FRAMES_IOVA + BigInt(index * Const.FB_SIZE), len: Const.FB_SIZE });
  }
}
