// FNV-1a 64, the frame hash of the DOOM hook's hash lines and the card
// model's frame log, as 16 lowercase hex digits.

/** FNV-1a, 64 bits, of `buf`, as 16 lowercase hex digits. */
export function fnv1a64(buf: Uint8Array): string {
  // Four 16-bit limbs: no BigInt in the loop.
  let h0 = 0x2325, h1 = 0x8422, h2 = 0x9ce4, h3 = 0xcbf2;
  for (const byte of buf) {
    h0 ^= byte;
    // h *= 0x100000001b3 (= 2^40 + 0x1b3), modulo 2^64.
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + (t1 >>> 16) + ((h0 << 8) & 0xffff);
    const t3 = h3 * 0x1b3 + (t2 >>> 16) + (h0 >>> 8) + (h1 << 8);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return [h3, h2, h1, h0].map((v) => v.toString(16).padStart(4, '0')).join('');
}
