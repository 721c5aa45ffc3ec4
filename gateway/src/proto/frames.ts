// Frames out of a byte stream (the gateway <-> QEMU UNIX socket): chunks
// go in as they arrive, split or joined anyhow; decoded messages, or coded
// refusals, come out in order (docs/protocol.md, "Framing").
import { PciemError } from '../errors.js';
import { checkHeader, decodeBody, HEADER_SIZE, Limits, type Message, type RawHeader, readHeader } from '../../../proto/generated/wire.js';
import { protoError } from './codec.js';

export type FrameResult =
  | { ok: true; message: Message; bytes: number }
  /**
   * A refused frame. `header` is what it said (null if none was read), so
   * the session can answer the request with an error reply. `fatal`: the
   * stream cannot be read further (a size above MAX_BODY, or the stream
   * ended inside a frame); the reader returns nothing more.
   */
  | { ok: false; error: PciemError; header: RawHeader | null; fatal: boolean };

export class FrameReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private header: RawHeader | null = null;
  private dead = false;

  /** Bytes held, waiting for the rest of their frame. */
  get buffered(): number {
    return this.length;
  }

  /** After a fatal result: nothing more will be read. */
  get failed(): boolean {
    return this.dead;
  }

  /**
   * Takes the next chunk of the stream; returns the frames it completed.
   * bytes fields of the messages are views into the chunks pushed, which
   * must therefore not be reused by the caller (socket chunks never are).
   */
  push(chunk: Uint8Array): FrameResult[] {
    if (this.dead) return [];
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.length += chunk.length;
    }
    const out: FrameResult[] = [];
    for (;;) {
      if (this.header === null) {
        if (this.length < HEADER_SIZE) break;
        const h = readHeader(this.take(HEADER_SIZE));
        // The size is checked before any of the body is held; every other
        // header rule is applied when the body has been skipped, so that a
        // refused frame does not cost the stream its framing.
        if (h.size > Limits.MAX_BODY) {
          let error: PciemError;
          try {
            checkHeader(h);
            error = protoError('TOO_BIG', `body of ${h.size} bytes`);
          } catch (e) {
            if (!(e instanceof PciemError)) throw e;
            error = e;
          }
          this.die();
          out.push({ ok: false, error, header: h, fatal: true });
          break;
        }
        this.header = h;
      }
      if (this.length < this.header.size) break;
      const h = this.header;
      this.header = null;
      const body = this.take(h.size);
      try {
        out.push({ ok: true, message: decodeBody(h, body), bytes: HEADER_SIZE + h.size });
      } catch (e) {
        if (!(e instanceof PciemError)) throw e;
        out.push({ ok: false, error: e, header: h, fatal: false });
      }
    }
    return out;
  }

  /** The stream has ended: a frame begun and not finished is TRUNCATED. */
  end(): FrameResult | null {
    if (this.dead || (this.length === 0 && this.header === null)) return null;
    const h = this.header;
    const error = protoError('TRUNCATED', h === null ? `stream ended inside a header (${this.length} bytes)` : `stream ended ${h.size - this.length} bytes before the end of a frame`);
    this.die();
    return { ok: false, error, header: h, fatal: true };
  }

  private die(): void {
    this.dead = true;
    this.chunks = [];
    this.length = 0;
    this.header = null;
  }

  /** The next n bytes, consumed: a view when one chunk holds them all. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first === undefined || n === 0) return Buffer.alloc(0);
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - got);
        c.copy(out, got, 0, k);
        got += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.length -= n;
    return out;
  }
}
