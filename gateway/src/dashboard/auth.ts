// Who may use the dashboard: whoever holds the token printed at start-up,
// through a Host (and, from a browser, an Origin) that names this
// dashboard, so a page on another site cannot reach it by DNS rebinding.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { PciemError } from '../errors.js';

/** 128 random bits, hex. */
export function newToken(): string {
  return randomBytes(16).toString('hex');
}

/** A token given by the caller: URL-safe and long enough not to be guessed. */
export function checkToken(token: string): string {
  if (!/^[A-Za-z0-9._~-]{16,256}$/.test(token)) {
    throw new PciemError('PCIEM_ERR_INVALID', 'a dashboard token is 16 to 256 characters of A-Z a-z 0-9 . _ ~ -');
  }
  return token;
}

/**
 * Whether `given` is the token, in time that does not depend on how much of
 * it matches (both sides are hashed first, so their lengths do not show either).
 */
export function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** `host` as it appears in a URL (IPv6 in brackets). */
export function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/**
 * Whether a Host header value names this dashboard: the bound address with
 * the bound port, or a loopback name with any port (a browser outside a VM
 * reaches a forwarded port as localhost:N). An attacker's DNS name that
 * resolves to this address is refused.
 */
export function hostAllowed(hostHeader: string | undefined, boundHost: string, port: number): boolean {
  if (hostHeader === undefined) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostHeader.trim().toLowerCase());
  if (!m) return false;
  const name = m[1] ?? '';
  const p = m[2] === undefined ? 80 : Number(m[2]);
  if (LOOPBACK_NAMES.has(name)) return true;
  return name === urlHost(boundHost).toLowerCase() && p === port;
}

/** Whether an Origin header (absent for non-browser clients) is this dashboard's own page. */
export function originAllowed(origin: string | undefined, boundHost: string, port: number): boolean {
  if (origin === undefined) return true;
  const m = /^http:\/\/(.+)$/.exec(origin.trim());
  return m !== null && hostAllowed(m[1], boundHost, port);
}
