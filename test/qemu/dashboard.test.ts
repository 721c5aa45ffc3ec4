// The dashboard in a real browser (issue 7): the gateway with the FakeHost
// and the real QEMU card model (test/lib/card-rig.ts), the dashboard over
// the rig's sessions and QMP, and Debian's chromium driven headless by
// playwright-core. A test program draws known frames through the card and
// makes known register writes; the page must show the frames pixel for
// pixel (a screenshot of the canvas's region, decoded and compared) and
// list the writes; filters and pause work; a wrong or missing token gets
// nothing; the port is on 127.0.0.1 only.
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { startDashboard, type Dashboard } from '../../gateway/src/dashboard/index.js';
import { Const, Reg } from '../../proto/generated/protopciem.js';
import { startRig, type CardRig } from '../lib/card-rig.js';
import { entry } from '../lib/cmdbuf.js';
import { decodePng } from '../lib/png.js';

const CHROMIUM = '/usr/bin/chromium';
const W = 640;
const H = 480;

/** Test writes carry this in their top half, so they are told apart from the driver's own. */
const MARK = 0xd1a60000;

/** The little of the DOM the functions run in the page use (the project's tsconfig has no DOM library). */
interface PageNode {
  textContent: string | null;
  hidden: boolean;
  querySelectorAll(selector: string): ArrayLike<PageNode>;
}
declare const document: { getElementById(id: string): PageNode | null; querySelectorAll(selector: string): ArrayLike<PageNode> };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How a TCP connection to host:port ends: 'connected' or the error code. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.setTimeout(3000, () => {
      s.destroy();
      resolve('timeout');
    });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Whether a WebSocket upgrade to `url` is accepted; the HTTP status if not. */
function upgrade(url: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.once('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(String(res.statusCode));
      ws.terminate();
    });
    ws.once('error', (e) => resolve(e.message));
  });
}

describe('dashboard in headless chromium, over the gateway + QEMU card (no kernel)', function () {
  this.timeout(120_000);
  let rig: CardRig;
  let d: Dashboard;
  let browser: Browser;
  let page: Page;

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: Debian's chromium is in scripts/packages.debian, \`make deps\` installs it`);
    rig = await startRig();
    d = await startDashboard({ server: rig.server, qmp: () => rig.qmp, port: 0, frameIntervalMs: 100 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--force-color-profile=srgb', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1200 }, deviceScaleFactor: 1 });
  });

  after(async function () {
    await browser?.close();
    await d?.close();
    await rig?.close();
  });

  /** The canvas's region of the page, as a screenshot, decoded: RGBA. */
  async function canvasShot(): Promise<Buffer> {
    const box = await page.locator('#screen').boundingBox();
    if (box === null) throw new Error('the canvas is not on the page');
    expect([box.width, box.height]).to.deep.equal([W, H]);
    const img = decodePng(await page.screenshot({ clip: box, animations: 'disabled', caret: 'initial' }));
    expect([img.width, img.height]).to.deep.equal([W, H]);
    return img.rgba;
  }

  /** The first pixel where the screenshot differs from the expected RGB image, or null. */
  function firstDifference(rgba: Buffer, rgb: Uint8Array): string | null {
    for (let p = 0; p < W * H; p++) {
      if (rgba[p * 4] !== rgb[p * 3] || rgba[p * 4 + 1] !== rgb[p * 3 + 1] || rgba[p * 4 + 2] !== rgb[p * 3 + 2]) {
        return `(${p % W},${Math.floor(p / W)}): shown ${[...rgba.subarray(p * 4, p * 4 + 3)].join(',')}, expected ${[...rgb.subarray(p * 3, p * 3 + 3)].join(',')}`;
      }
    }
    return null;
  }

  /** Waits until the canvas shows `rgb` (frames arrive every 100 ms), then compares a screenshot. */
  async function expectShown(rgb: Uint8Array): Promise<void> {
    const end = Date.now() + 15_000;
    let diff = firstDifference(await canvasShot(), rgb);
    while (diff !== null && Date.now() < end) {
      await sleep(200);
      diff = firstDifference(await canvasShot(), rgb);
    }
    expect(diff, 'the canvas screenshot against the expected frame').to.equal(null);
  }

  /** The trace rows of the test's writes (MMIO writes of a value with MARK), newest first: [kind, bar, offset, size, value]. */
  async function markedRows(visibleOnly = false): Promise<string[][]> {
    return page.evaluate((only) => Array.from(document.querySelectorAll('#trace tbody tr'))
      .filter((tr) => !only || !tr.hidden)
      .map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? ''))
      .filter((c) => c[3] === 'mmio_write' && (c[7] ?? '').startsWith('0xd1a6'))
      .map((c) => c.slice(3, 8)), visibleOnly);
  }

  const hex = (v: number): string => `0x${v.toString(16)}`;
  const row = (value: number): string[] => ['mmio_write', '0', hex(Reg.DATA), '4', hex(value)];

  it('binds to 127.0.0.1 only', async function () {
    expect(new URL(d.url).hostname).to.equal('127.0.0.1');
    expect(await tryConnect('127.0.0.1', d.port)).to.equal('connected');
    // Another loopback address and every other interface of this machine are refused.
    const others = ['127.0.0.2', ...Object.values(networkInterfaces()).flat().filter((a) => a && !a.internal && a.family === 'IPv4').map((a) => a?.address ?? '')];
    for (const a of others) expect(await tryConnect(a, d.port), a).to.equal('ECONNREFUSED');
  });

  it('a wrong or missing token is refused: 403 for the page, no WebSocket', async function () {
    const base = `http://127.0.0.1:${d.port}/`;
    for (const url of [base, `${base}?token=`, `${base}?token=0123456789abcdef0123456789abcdef`, `${base}?token=${d.token}x`]) {
      const r = await page.goto(url);
      expect(r?.status(), url).to.equal(403);
      expect(await page.locator('canvas').count()).to.equal(0);
      expect(await page.content()).to.not.include(d.token);
    }
    const ws = `ws://127.0.0.1:${d.port}/ws`;
    expect(await upgrade(ws)).to.equal('403');
    expect(await upgrade(`${ws}?token=0123456789abcdef0123456789abcdef`)).to.equal('403');
    expect(await upgrade(`${ws}?token=${d.token}`)).to.equal('open');
  });

  it('shows the frame the card displays, pixel for pixel, and follows the next one live', async function () {
    // A frame where every row and column differs: DMA_FRAME from the driver's buffer 1.
    const frame = rig.drv.frames.subarray(Const.FB_SIZE, 2 * Const.FB_SIZE);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = (y * W + x) * 3;
        frame[i] = x & 0xff;
        frame[i + 1] = (y * 2 + (x >> 8) * 64) & 0xff;
        frame[i + 2] = (x * 3 + y * 5) & 0xff;
      }
    }
    expect((await rig.drv.showFrame(1)).errorCode).to.equal(0);
    expect((await rig.screen()).equals(Buffer.from(frame))).to.equal(true);

    const r = await page.goto(d.url);
    expect(r?.status()).to.equal(200);
    await page.waitForFunction(() => document.getElementById('conn')?.textContent === 'live');
    await expectShown(frame);

    // While the page is open: CLEAR and a BLIT_RECT through a command buffer.
    const patch = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 19 + 7) & 0xff);
    const c = await rig.drv.executeCmdbuf(Buffer.concat([
      entry('CLEAR', { R: 0x20, G: 0x40, B: 0x60, A: 0xff }),
      entry('BLIT_RECT', { X: 100, Y: 200, WIDTH: 4, HEIGHT: 3 }, patch),
    ]));
    expect(c.errorCode).to.equal(0);
    const want = new Uint8Array(W * H * 3);
    for (let i = 0; i < want.length; i += 3) want.set([0x20, 0x40, 0x60], i);
    for (let y = 0; y < 3; y++) want.set(patch.subarray(y * 12, y * 12 + 12), ((200 + y) * W + 100) * 3);
    await expectShown(want);
    expect(await page.locator('#display').textContent()).to.match(/^640x480, frame \d+$/);
  });

  it('the event trace lists the writes the test made: bar, offset, size, value, in program order', async function () {
    await page.waitForFunction(() => document.getElementById('conn')?.textContent === 'live');
    expect(rig.session.tracer, 'the session is traced while the page shows the trace').to.be.a('function');
    const values = [1, 2, 3].map((k) => MARK + k);
    for (const v of values) rig.drv.write(Reg.DATA, v);
    await page.locator('#trace tbody tr.mmio_write', { hasText: hex(values[2] ?? 0) }).waitFor();
    // Newest first.
    expect(await markedRows()).to.deep.equal(values.map(row).reverse());
    // DATA is a shadowed register: the model stores each value back into BAR memory, listed too.
    await page.locator('#trace tbody tr.bar_store', { hasText: hex(values[2] ?? 0) }).waitFor();
    // The card's own traffic from the frames is there too: its DMA reads and the MSIs.
    expect(await page.locator('#trace tbody tr.dma_read').count()).to.be.above(0);
    expect(await page.locator('#trace tbody tr.msi').count()).to.be.above(0);
  });

  it('a filter hides a kind: its rows go, new ones are not sent; unticking it back shows them', async function () {
    await page.locator('#kind-mmio_write').uncheck();
    expect(await markedRows(true)).to.deep.equal([]);
    // The page has sent its new filter; give the gateway a moment to take it (it does not answer).
    await sleep(300);
    expect(await page.locator('#trace tbody tr.msi:not([hidden])').count()).to.be.above(0);
    rig.drv.write(Reg.DATA, MARK + 4);
    // An MSI after the write: once it is listed, the write would have been too.
    const before = await page.locator('#trace tbody tr.msi').count();
    expect((await rig.drv.arith('ADD', 1)).errorCode).to.equal(0);
    await page.waitForFunction((n) => document.querySelectorAll('#trace tbody tr.msi').length > n, before);
    await page.locator('#kind-mmio_write').check();
    const shown = await markedRows(true);
    expect(shown.map((r) => r[4])).to.not.include(hex(MARK + 4));
    expect(shown).to.deep.equal([3, 2, 1].map((k) => row(MARK + k)));
  });

  it('pause stops the trace (and the tracing); resume lists new writes again', async function () {
    await page.locator('#pause').click();
    const paused = Date.now() + 5000;
    while (rig.session.tracer !== null && Date.now() < paused) await sleep(20);
    expect(rig.session.tracer, 'nobody watches: no tracer').to.equal(null);
    rig.drv.write(Reg.DATA, MARK + 5);
    await sleep(500);
    expect((await markedRows()).map((r) => r[4])).to.not.include(hex(MARK + 5));
    await page.locator('#pause').click();
    const end = Date.now() + 5000;
    while (rig.session.tracer === null && Date.now() < end) await sleep(20);
    rig.drv.write(Reg.DATA, MARK + 6);
    await page.locator('#trace tbody tr.mmio_write', { hasText: hex(MARK + 6) }).waitFor();
    expect((await markedRows()).slice(0, 2)).to.deep.equal([row(MARK + 6), row(MARK + 3)]);
  });

  it("shows the session's counters with rates, and QEMU's status", async function () {
    await page.waitForFunction(() => /running/.test(document.getElementById('qemu')?.textContent ?? ''), undefined, { timeout: 5000 });
    expect(await page.locator('#qemu').textContent()).to.match(/^QEMU \d+\.\d+\.\d+: running$/);
    const writes = (): Promise<string> => page.locator('#sessions tr[data-counter="mmio_writes"] td').nth(1).innerText();
    const total = BigInt(await writes());
    expect(total > 0n && total <= rig.session.counters.mmio_writes).to.equal(true);
    for (let i = 0; i < 1000; i++) rig.drv.write(Reg.DATA, MARK + 7);
    await page.waitForFunction((t) => {
      const tds = document.querySelectorAll('#sessions tr[data-counter="mmio_writes"] td');
      return BigInt(tds[1]?.textContent ?? '0') >= BigInt(t) + 1000n && Number(tds[2]?.textContent) > 0;
    }, total.toString(), { timeout: 5000 });
    expect(await page.locator('#sessions h3').first().innerText()).to.match(/session 1: protopciem/);
  });

  it('QEMU gone: the page says "no QEMU" and that no model is connected, the dashboard carries on', async function () {
    rig.qemu.kill('SIGKILL');
    await page.waitForFunction(() => document.getElementById('qemu')?.textContent === 'no QEMU', undefined, { timeout: 10_000 });
    await page.waitForFunction(() => document.getElementById('sessions')?.textContent === 'no model connected', undefined, { timeout: 10_000 });
    expect(await page.locator('#display').textContent()).to.equal('no QEMU');
    expect(await page.locator('#conn').textContent()).to.equal('live');
  });

  it('close() ends the page\'s connection and the port', async function () {
    await d.close();
    await page.waitForFunction(() => /disconnected/.test(document.getElementById('conn')?.textContent ?? ''));
    expect(rig.session.tracer).to.equal(null);
    expect(await tryConnect('127.0.0.1', d.port)).to.equal('ECONNREFUSED');
  });
});
