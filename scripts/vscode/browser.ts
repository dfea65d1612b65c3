// Debian's Chromium, headless, driven by playwright-core: no browser download.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserServer, type Page } from 'playwright-core';

export const CHROMIUM = process.env['VMSNAP_CHROMIUM'] ?? '/usr/bin/chromium';

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export interface Chromium {
  browser: Browser;
  page: Page;
  pid: number;
  close(): Promise<void>;
}

export async function openChromium(viewport = { width: 1400, height: 900 }): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: install the Debian package chromium (bash scripts/setup.sh as root does).`);
  }
  // A server rather than launch(): it gives the browser's pid, so the run can end exactly that process.
  const server: BrowserServer = await chromium.launchServer({ executablePath: CHROMIUM, headless: true, args: ARGS });
  const pid = server.process().pid;
  if (pid === undefined) throw new Error('Chromium did not start.');
  const browser = await chromium.connect(server.wsEndpoint());
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  return {
    browser,
    page,
    pid,
    async close() {
      await browser.close().catch(() => {});
      await server.close().catch(() => {});
      try {
        process.kill(pid, 0);
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}
