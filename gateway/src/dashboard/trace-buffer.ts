// The dashboard's side of the relay's event trace: the sessions' tracers
// write into it, a timer takes a batch out for the browsers. It holds at
// most `perKind` events of each kind per batch and counts the rest: the
// display samples a busy relay, memory stays bounded, the relay itself
// never waits or drops. Kinds are capped separately so that a flood of
// MMIO writes cannot hide the interrupt that follows it.
import { IrqKind, ResetKind } from '../../../proto/generated/wire.js';
import { TRACE_KINDS, type TraceEvent, type TraceKind } from '../relay/trace.js';

export interface TraceRecord {
  /** Numbers every traced event of the dashboard, shown or not: a gap is a drop. */
  seq: number;
  /** process.hrtime.bigint() when it crossed the relay. */
  time: bigint;
  /** The dashboard's number for the session. */
  session: number;
  ev: TraceEvent;
}

export interface TraceBatch {
  records: ReadonlyMap<TraceKind, readonly TraceRecord[]>;
  dropped: ReadonlyMap<TraceKind, number>;
}

/** One event as the browser gets it: numbers in hex where the trace has them as addresses or values. */
export interface WireEvent {
  seq: number;
  /** Microseconds since the dashboard started. */
  t: number;
  session: number;
  kind: TraceKind;
  bar?: number;
  offset?: string;
  size?: number;
  value?: string;
  addr?: string;
  len?: number;
  irq?: string;
  vector?: number;
  level?: number;
  reset?: string;
}

export class TraceBuffer {
  /** The kinds some browser wants; others are counted in seq only. */
  wanted: ReadonlySet<TraceKind> = new Set();
  private seq = 0;
  private droppedCount = 0;
  private records = new Map<TraceKind, TraceRecord[]>();
  private dropped = new Map<TraceKind, number>();

  constructor(private readonly perKind: number) {}

  record(session: number, ev: TraceEvent, time: bigint): void {
    const seq = ++this.seq;
    if (!this.wanted.has(ev.kind)) return;
    let q = this.records.get(ev.kind);
    if (q === undefined) {
      q = [];
      this.records.set(ev.kind, q);
    }
    if (q.length < this.perKind) q.push({ seq, time, session, ev });
    else {
      this.dropped.set(ev.kind, (this.dropped.get(ev.kind) ?? 0) + 1);
      this.droppedCount++;
    }
  }

  /** Events traced so far, and how many of them the caps left out. */
  get traced(): number {
    return this.seq;
  }

  get droppedTotal(): number {
    return this.droppedCount;
  }

  /** Everything recorded since the last take. */
  take(): TraceBatch {
    const batch = { records: this.records, dropped: this.dropped };
    this.records = new Map();
    this.dropped = new Map();
    return batch;
  }
}

/** A browser's share of a batch: the kinds it shows, in relay order, and how many of them were left out. */
export function select(batch: TraceBatch, kinds: ReadonlySet<TraceKind>): { records: TraceRecord[]; dropped: number } {
  const records: TraceRecord[] = [];
  let dropped = 0;
  for (const k of TRACE_KINDS) {
    if (!kinds.has(k)) continue;
    records.push(...(batch.records.get(k) ?? []));
    dropped += batch.dropped.get(k) ?? 0;
  }
  records.sort((a, b) => a.seq - b.seq);
  return { records, dropped };
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
const nameOf = (table: Record<string, number>, v: number): string => Object.keys(table).find((k) => table[k] === v) ?? String(v);

export function wireEvent(r: TraceRecord, t0: bigint): WireEvent {
  const base = { seq: r.seq, t: Number((r.time - t0) / 1000n), session: r.session };
  const ev = r.ev;
  switch (ev.kind) {
    case 'mmio_write':
    case 'mmio_read':
    case 'bar_store':
      return { ...base, kind: ev.kind, bar: ev.bar, offset: hex(ev.offset), size: ev.size, value: hex(ev.value) };
    case 'config_write':
      return { ...base, kind: ev.kind, offset: hex(ev.offset), size: ev.size, value: hex(ev.value) };
    case 'reset':
      return { ...base, kind: ev.kind, reset: nameOf(ResetKind, ev.reset) };
    case 'dma_read':
    case 'dma_write':
      return { ...base, kind: ev.kind, addr: hex(ev.addr), len: ev.len };
    case 'msi':
      return { ...base, kind: ev.kind, irq: nameOf(IrqKind, ev.irq), vector: ev.vector };
    case 'intx':
      return { ...base, kind: ev.kind, level: ev.level ? 1 : 0 };
  }
}
