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
    assert.ok(await toast.first().getByRole('button', { name: 'Show Clones' }).isVisible(), 'the refusal offers Show Clones');
  });

  it('the comparison table shows the lock instead of Delete on the locked snapshot', async () => {
    const page = chromium!.page;
    await page.keyboard.press('Escape');
    await runFromPalette(page, 'VM Snapshots: Open Comparison Table');
    const frame = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    const rowNamed = (name: string) => frame.locator('table.rows tbody tr').filter({ has: frame.locator('td:nth-child(2)', { hasText: new RegExp(`^${name}$`) }) });
    const locked = rowNamed('Fresh install');
    await locked.waitFor({ timeout: 30_000 });
    const actions = locked.locator('td.actions');
    assert.match((await actions.textContent()) ?? '', /Locked/);
    assert.equal(await actions.getByRole('button', { name: 'Delete' }).count(), 0);
    assert.match((await actions.locator('.locked').getAttribute('title')) ?? '', /“ci-runner”/);
    // Unlocked snapshots keep their Delete button.
    assert.equal(await rowNamed('Before npm upgrade').locator('td.actions').getByRole('button', { name: 'Delete' }).count(), 1);
    await actions.scrollIntoViewIfNeeded();
    await actions.locator('.locked').hover();
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(ROOT, 'test-artifacts', 'demo-compare-locked-dark.png') });
  });
});
