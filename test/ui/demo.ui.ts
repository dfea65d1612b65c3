// UI test of `npm start` itself: the demo's workbench (the packaged extension, the demo library, no test driver)
// pops up notifications as plain VS Code does, so a refused action says so instead of only lighting the bell.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { openChromium, type Chromium } from '../../scripts/vscode/browser';
import { ROOT } from '../../scripts/vscode/host';
import { startDemo, type Demo } from '../../scripts/vscode/start';
import { runFromPalette, waitFor } from './workbench';

describe('UI: npm start shows notifications', function () {
  this.timeout(240_000);
  let demo: Demo | undefined;
  let chromium: Chromium | undefined;
  const profileDir = mkdtempSync(join(tmpdir(), 'vmsnap-demo-profile-'));

  after(async () => {
    await chromium?.close();
    await demo?.server.stop();
    rmSync(profileDir, { recursive: true, force: true });
  });

  it('shows the dev machine in the status bar at start-up; a refused delete pops up as a toast', async () => {
    demo = await startDemo({ profileDir });
    chromium = await openChromium();
    const page = chromium.page;
    await page.goto(demo.url);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    // The demo sets vmsnap.devMachine: its status item shows in a fresh window with nothing opened (onStartupFinished).
    const status = page.locator('.statusbar-item', { hasText: 'dev-vm' });
    await status.first().waitFor({ timeout: 60_000 });
    assert.match((await status.first().textContent()) ?? '', /dev-vm · /);
    await runFromPalette(page, 'VM Snapshots: Delete Snapshot');
    const input = page.locator('.quick-input-widget input');
    const title = page.locator('.quick-input-widget .quick-input-title');
    await waitFor(async () => /machine/i.test((await title.textContent()) ?? ''), 'the machine question');
    await input.fill('dev-vm');
    await page.keyboard.press('Enter');
    await waitFor(async () => /dev-vm/.test((await title.textContent()) ?? ''), 'the snapshot question');
    await input.fill('Fresh install');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Fresh install' }).first().waitFor();
    await page.keyboard.press('Enter');
    // Refused before any question: the snapshot is locked by the linked clone ci-runner.
    const toast = page.locator('.notification-toast', { hasText: /ci-runner/ });
    try {
      await toast.first().waitFor({ timeout: 30_000 });
    } finally {
      await page.screenshot({ path: join(ROOT, 'test-artifacts', 'demo-notification.png') });
    }
    assert.match((await toast.first().textContent()) ?? '', /ci-runner|clone/i);
  });
});
