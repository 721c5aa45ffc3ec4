// Polling in tests: waits until a condition holds, or fails naming what it
// waited for and how long.
import { setTimeout as sleep } from 'node:timers/promises';

export async function until(what: string, cond: () => boolean, ms: number, everyMs = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(everyMs);
  }
}
