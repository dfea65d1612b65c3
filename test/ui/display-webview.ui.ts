// The display tab's page on its own in Chromium (no workbench): the test plays the extension's side of the relay
// protocol and an RFB server, so it sees exactly what the page sends: noVNC driven through the relay channel
// draws a frame, acknowledges every byte (flow control), and survives a server that announces a huge screen.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { openChromium, type Chromium } from '../../scripts/vscode/browser';
import { ROOT } from '../../scripts/vscode/host';

const PAGE = `<!DOCTYPE html><html><head><meta charset="UTF-8"></head><body>
<header id="bar"><span id="status"></span><button id="scale" data-actual="1:1" data-fit="Scale to Fit">1:1</button><button id="cad">Ctrl+Alt+Del</button></header>
<main id="screen" style="width:800px;height:600px;position:relative"><img id="last" hidden><div id="rfb" style="position:absolute;inset:0"></div><div id="notice" hidden></div></main>
<script>
  window.posted = [];
  window.acquireVsCodeApi = () => ({ postMessage: (m) => window.posted.push(m), getState: () => undefined, setState: () => {} });
</script></body></html>`;

interface Posted {
  type: string;
  session?: number;
  bytes?: number | Record<string, number>;
}

/** The 24-byte ServerInit after the size: 32 bpp, depth 24, little endian, true colour, shifts 16/8/0, then a name. */
function serverInit(width: number, height: number, name = 'test'): Buffer {
  const b = Buffer.alloc(24 + name.length);
  b.writeUInt16BE(width, 0);
  b.writeUInt16BE(height, 2);
  b.set([32, 24, 0, 1], 4);
  b.writeUInt16BE(255, 8);
  b.writeUInt16BE(255, 10);
  b.writeUInt16BE(255, 12);
  b.set([16, 8, 0], 14);
  b.writeUInt32BE(name.length, 20);
  b.write(name, 24, 'latin1');
  return b;
}

describe('display webview: noVNC on the relay channel (Chromium, the page alone)', function () {
  this.timeout(60_000);
  let chromium: Chromium;
  let page: Page;

  // Playwright carries a Uint8Array argument over as one; the page has no DOM types here, hence globalThis.
  const send = async (m: unknown): Promise<void> => {
    await page.evaluate((msg: unknown) => (globalThis as unknown as { postMessage(m: unknown, o: string): void }).postMessage(msg, '*'), m);
  };
  const data = (bytes: Buffer, session = 1): Promise<void> => send({ type: 'data', session, bytes: new Uint8Array(bytes) });
  const posted = (): Promise<Posted[]> => page.evaluate('window.posted') as Promise<Posted[]>;
  /** The bytes the page sent to the server so far, in order. */
  const sentBytes = async (): Promise<number[]> =>
    (await posted()).filter((m) => m.type === 'data').flatMap((m) => Object.values(m.bytes as Record<string, number>));
  const waitSent = async (n: number): Promise<number[]> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const got = await sentBytes();
      if (got.length >= n) return got;
      if (Date.now() > deadline) throw new Error(`the page sent ${got.length} of ${n} bytes: ${JSON.stringify(await posted())}`);
      await page.waitForTimeout(20);
    }
  };

  async function handshake(width: number, height: number): Promise<void> {
    await send({ type: 'status', status: { machineName: 'dev', power: 'running', connected: true, message: null } });
    await send({ type: 'open', session: 1 });
    await data(Buffer.from('RFB 003.008\n', 'latin1'));
    assert.equal(Buffer.from(await waitSent(12)).toString('latin1'), 'RFB 003.008\n');
    await data(Buffer.from([1, 1])); // one security type: None
    assert.equal((await waitSent(13))[12], 1);
    await data(Buffer.from([0, 0, 0, 0])); // SecurityResult: OK
    assert.equal((await waitSent(14))[13], 1, 'ClientInit asks to share the screen');
    await data(serverInit(width, height));
  }

  beforeEach(async () => {
    chromium = await openChromium();
    page = chromium.page;
    await page.setContent(PAGE);
    await page.addScriptTag({ content: readFileSync(join(ROOT, 'dist/webview/display.js'), 'utf8') });
    await page.waitForFunction('window.posted.some((m) => m.type === "ready")');
  });

  afterEach(async () => {
    await chromium?.close();
  });

  it('draws what the server sends and acknowledges every byte it was given', async () => {
    await handshake(64, 32);
    await page.waitForFunction('document.querySelector("#rfb canvas")?.width === 64');
    // A raw FramebufferUpdate in the pixel format noVNC asks for (SetPixelFormat: red at shift 0, blue at 16): the
    // left half red, the right half blue.
    const header = Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 64, 0, 32, 0, 0, 0, 0]);
    const pixels = Buffer.alloc(64 * 32 * 4);
    for (let i = 0; i < 64 * 32; i++) pixels.writeUInt32LE(i % 64 < 32 ? 0x0000ff : 0xff0000, i * 4);
    await data(Buffer.concat([header, pixels]));
    await page.waitForFunction(`(() => {
      const c = document.querySelector('#rfb canvas');
      const d = c.getContext('2d').getImageData(0, 0, 64, 32).data;
      return d[0] === 255 && d[2] === 0 && d[63 * 4 + 2] === 255 && d[63 * 4] === 0;
    })()`);
    const all = await posted();
    const acked = all.filter((m) => m.type === 'ack').reduce((n, m) => n + (m.bytes as number), 0);
    assert.equal(acked, 12 + 2 + 4 + serverInit(64, 32).length + header.length + pixels.length, 'every byte acknowledged');
    assert.match((await page.textContent('#status')) ?? '', /dev: running/);
  });

  it('refuses a server that announces a 65535x65535 screen: the page stays responsive, ends the session and says why', async () => {
    await handshake(65535, 65535);
    await page.waitForFunction('window.posted.some((m) => m.type === "close" && m.session === 1)');
    assert.equal(await page.evaluate('1 + 1'), 2, 'the page still runs scripts');
    const size = (await page.evaluate('(() => { const c = document.querySelector("#rfb canvas"); return c ? c.width * c.height : 0; })()')) as number;
    assert.ok(size <= 8192 * 8192, `no giant canvas is kept: ${size} pixels`);
    assert.match((await page.textContent('#notice')) ?? '', /65535×65535 screen, larger than the tab shows/);
    // The next session works: the tab reconnects after such a failure.
    await send({ type: 'open', session: 2 });
    await data(Buffer.from('RFB 003.008\n', 'latin1'), 2);
    await page.waitForFunction('window.posted.filter((m) => m.type === "data" && m.session === 2).length > 0');
  });
});
