// UI test: powering a machine on and off with the tree's buttons and menus, and its console in a terminal, in the
// real workbench (code-server + Chromium). The guest is the counting boot sector on TCG; every QEMU is ended after.
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { runningPid, stopMachine } from '../../src/engine/runtime';
import { ACCEL, libraryWithCountingGuest, waitForCounts } from '../support/guest-machines';
import { chooseFromContextMenu, openWorkbench, waitFor, type Workbench } from './workbench';

describe('UI: power buttons and the serial console', function () {
  this.timeout(180_000);
  let workbench: Workbench;
  let page: Page;
  let libraryDir: string;
  let folder: string;

  const shot = (name: string) => workbench.shot(name);
  const row = () => page.getByRole('treeitem', { name: /^guest/ }).first();

  /**
   * Runs a context-menu item of the machine's row and waits for its effect. A menu opened on a row the workbench is
   * redrawing at that moment (a power state just changed) closes unused: try again then.
   */
  async function fromContextMenu(item: string, done: () => Promise<boolean>, what: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await chooseFromContextMenu(page, row(), item);
      try {
        await waitFor(done, what, 10_000);
        return;
      } catch (e) {
        if (attempt === 3) throw e;
        await page.keyboard.press('Escape');
      }
    }
  }

  // The test looks at QEMU's pidfile only: the library's status takes the machine lock, and the extension's commands
  // would find the machine busy while the test holds it.
  before(async () => {
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-power-'));
    folder = (await libraryWithCountingGuest(libraryDir, join(libraryDir, 'guest.raw'))).machine.folder;
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir, 'vmsnap.accelerator': ACCEL === 'kvm' ? 'kvm' : 'tcg' });
    page = workbench.page;
  });

  afterEach(async function () {
    await workbench?.shotIfFailed(this.currentTest);
  });

  after(async () => {
    // Whatever happened, no QEMU outlives the suite.
    if (folder) await stopMachine(folder, { force: true }).catch(() => {});
    await workbench?.close();
    if (libraryDir) rmSync(libraryDir, { recursive: true, force: true });
  });

  it('the inline Power On button starts the machine; the row turns running and offers Pause and Power Off', async () => {
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    if (!(await row().isVisible())) await icon.click();
    await row().waitFor({ timeout: 30_000 });
    // The row is drawn again once its size is measured: click after that, on the settled row.
    await waitFor(async () => /KiB|MiB/.test((await row().textContent()) ?? ''), 'the row to show its size');
    await row().hover();
    await row().getByRole('button', { name: 'Power On' }).click();
    await waitFor(async () => (await runningPid(folder)) !== null, 'the machine to run').catch(async (e: unknown) => {
      const notes = await page.locator('.notifications-toasts, .notification-list-item').allTextContents().catch(() => []);
      const files = readdirSync(folder).join(' ');
      const log = existsSync(join(folder, 'qemu.log')) ? readFileSync(join(folder, 'qemu.log'), 'utf8') : '';
      throw new Error(`${String(e)} Notifications: ${notes.join(' | ')}; files: ${files}; qemu.log: ${log}`);
    });
    await row().locator('.codicon-vm-running').waitFor({ timeout: 15_000 });
    await row().hover();
    await row().getByRole('button', { name: 'Pause' }).waitFor();
    await row().getByRole('button', { name: 'Power Off' }).waitFor();
    assert.equal(await row().getByRole('button', { name: 'Power On' }).count(), 0, 'no Power On on a running machine');
    await waitForCounts(join(folder, 'serial.log'), 3);
    await shot('power-running');
  });

  it('right-click, Open Console: a terminal named after the machine opens; Power Off (Force) ends it', async () => {
    await fromContextMenu('Open Console', async () => (await page.getByText('Console: guest').count()) > 0, 'the console terminal to open');
    await page.waitForTimeout(1000);
    await shot('power-console');
    await fromContextMenu('Power Off (Force)', async () => (await runningPid(folder)) === null, 'the machine to be off');
    await row().locator('.codicon-vm').waitFor({ timeout: 15_000 });
    // The console says the machine stopped and its terminal closes.
    await waitFor(async () => (await page.getByText('Console: guest').count()) === 0, 'the console terminal to close');
  });
});
