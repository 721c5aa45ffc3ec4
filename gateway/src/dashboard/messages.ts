// The dashboard's WebSocket messages (docs/dashboard.md, "Messages"): JSON
// text both ways, and one binary message, the framebuffer.
import { TRACE_KINDS, type TraceKind } from '../relay/trace.js';
import type { WireEvent } from './trace-buffer.js';

export const MESSAGES_VERSION = 1;

/** The framebuffer message: this header, then the pixels, RGB888, row by row. */
export const FRAME_HEADER_BYTES = 16;
export const FRAME_MAGIC = 0x31424650; // 'PFB1', little-endian
export const FRAME_FORMAT_RGB888 = 1;

export function frameMessage(number: number, width: number, height: number, rgb: Buffer): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32LE(FRAME_MAGIC, 0);
  h.writeUInt16LE(FRAME_FORMAT_RGB888, 4);
  h.writeUInt16LE(0, 6);
  h.writeUInt16LE(width, 8);
  h.writeUInt16LE(height, 10);
  h.writeUInt32LE(number >>> 0, 12);
  return Buffer.concat([h, rgb]);
}

export interface SessionStats {
  id: number;
  model: string;
  device: string;
  state: string;
  /** The session's counters, in decimal (they are 64-bit). */
  counters: Record<string, string>;
  /** Per second over the last interval. */
  rates: Record<string, number>;
}

export type QemuStatus =
  | { state: 'none' }
  | { state: 'up'; status: string; running: boolean; version: string }
  | { state: 'error'; error: string };

export type DisplayStatus =
  /** No QEMU to grab from. */
  | { state: 'none' }
  | { state: 'up'; width: number; height: number; frames: number }
  | { state: 'error'; error: string };

export type ServerMessage =
  | { type: 'hello'; version: number; kinds: readonly TraceKind[]; frameIntervalMs: number; traceIntervalMs: number }
  | { type: 'trace'; events: WireEvent[]; dropped: number }
  | { type: 'stats'; sessions: SessionStats[]; qemu: QemuStatus; display: DisplayStatus; trace: { traced: number; dropped: number } };

export type ClientMessage =
  /** Stop (true) or restart (false) this browser's trace. */
  | { type: 'pause'; paused: boolean }
  /** The kinds of event this browser shows. */
  | { type: 'filter'; kinds: TraceKind[] };

const KINDS = new Set<string>(TRACE_KINDS);

/** A browser's message, or null if it is not one the dashboard takes. */
export function parseClientMessage(data: string): ClientMessage | null {
  let m: unknown;
  try {
    m = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return null;
  const o = m as Record<string, unknown>;
  if (o.type === 'pause' && typeof o.paused === 'boolean' && Object.keys(o).length === 2) return { type: 'pause', paused: o.paused };
  if (o.type === 'filter' && Array.isArray(o.kinds) && Object.keys(o).length === 2) {
    const kinds = o.kinds as unknown[];
    if (kinds.length > TRACE_KINDS.length || !kinds.every((k) => typeof k === 'string' && KINDS.has(k))) return null;
    return { type: 'filter', kinds: [...new Set(kinds as TraceKind[])] };
  }
  return null;
}
