// The relay's event trace: one record per access that crosses the gateway,
// for the dashboard and for debugging. A session calls its tracer only when
// one is set (ModelSession.tracer), so an untraced relay pays one test.
import type { IrqKind, ResetKind } from '../../../proto/generated/wire.js';

export type TraceEvent =
  /** A driver write relayed to the model (posted). */
  | { kind: 'mmio_write'; bar: number; offset: bigint; size: number; value: bigint }
  /** A driver read answered by the model (value: all-ones when it failed). */
  | { kind: 'mmio_read'; bar: number; offset: bigint; size: number; value: bigint }
  /** A store the model made into host BAR memory (shadowed registers). */
  | { kind: 'bar_store'; bar: number; offset: bigint; size: number; value: bigint }
  /** A config-space write relayed to the model (offset: in the model's layout). */
  | { kind: 'config_write'; offset: number; size: number; value: number }
  | { kind: 'reset'; reset: ResetKind }
  /** The model's DMA: read from / written to host memory. */
  | { kind: 'dma_read'; addr: bigint; len: number }
  | { kind: 'dma_write'; addr: bigint; len: number }
  | { kind: 'msi'; irq: IrqKind; vector: number }
  | { kind: 'intx'; level: boolean };

export type TraceKind = TraceEvent['kind'];

export const TRACE_KINDS: readonly TraceKind[] = [
  'mmio_write', 'mmio_read', 'bar_store', 'config_write', 'reset', 'dma_read', 'dma_write', 'msi', 'intx',
];

/** Gets each event as it crosses the relay; `time` is process.hrtime.bigint() in ns. */
export type Tracer = (ev: TraceEvent, time: bigint) => void;
