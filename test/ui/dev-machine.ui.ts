// UI test: a machine launched from a cloud image in the real workbench (code-server + Chromium), dark and light:
// its running row with the SSH port, its menu with the ways in over SSH, New Machine from Image's first question,
// and Connect with Remote-SSH without the Remote-SSH extension. Screenshots in test-artifacts/dev-machine-*.png.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Library, type MachineDetails } from '../../src/engine/machine';
import { stopMachine } from '../../src/engine/runtime';
import { writeCountingGuest } from '../support/counting-guest';
import { ACCEL, requireQemu } from '../support/guest-machines';
import { openWorkbench, runFromPalette, treeSettled, waitFor, type Workbench } from './workbench';

for (const theme of ['Dark', 'Light'] as const) {
  describe(`UI: a dev machine from a cloud image (${theme.toLowerCase()} theme)`, function () {
    this.timeout(180_000);
    let workbench: Workbench;
    let page: Page;
    let libraryDir: string;
    let machine: MachineDetails;
    let port: number;
    const name = theme.toLowerCase();
    const row = () => page.getByRole('treeitem', { name: /^dev-vm/ }).first();

    before(async () => {
      requireQemu();
      libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-dev-'));
      const lib = await Library.open(libraryDir, { qemu: { accel: ACCEL } });
      const raw = join(libraryDir, 'guest.raw');
      writeCountingGuest(raw);
      machine = (await lib.createFromImage('dev-vm', raw, { cpus: 1, memoryMiB: 64, diskSize: 1024 ** 3 })).machine;
      port = (await lib.startMachine(machine.id)).ssh!.port;
      workbench = await openWorkbench({
        'vmsnap.libraryFolder': libraryDir,
        'vmsnap.accelerator': ACCEL === 'kvm' ? 'kvm' : 'tcg',
        'workbench.colorTheme': `Default ${theme} Modern`,
      });
      page = workbench.page;
    });

    afterEach(async function () {
      await workbench?.shotIfFailed(this.currentTest);
    });

    after(async () => {
      if (machine) await stopMachine(machine.folder, { force: true }).catch(() => {});
      await workbench?.close();
      if (libraryDir) rmSync(libraryDir, { recursive: true, force: true });
    });

    it('the running row says where SSH answers; its menu offers Connect with Remote-SSH and Open SSH Terminal', async () => {
      const icon = page.getByRole('tab', { name: /VM Snapshots/ });
      await icon.waitFor({ timeout: 60_000 });
      if (!(await row().isVisible())) await icon.click();
      await row().waitFor({ timeout: 30_000 });
      await waitFor(async () => ((await row().textContent()) ?? '').includes(`ssh :${port}`), 'the row to show the SSH port');
      await treeSettled(page);
      await row().hover();
      assert.ok(await row().getByRole('button', { name: 'Connect with Remote-SSH' }).isVisible(), 'the inline Connect button');
      await page.waitForTimeout(1500); // the tooltip
      await workbench.shot(`dev-machine-row-${name}`);
      await row().click({ button: 'right' });
      await page.getByRole('menuitem', { name: 'Connect with Remote-SSH' }).waitFor();
      assert.ok(await page.getByRole('menuitem', { name: 'Open SSH Terminal' }).isVisible());
      await workbench.shot(`dev-machine-menu-${name}`);
      await page.keyboard.press('Escape');
    });

    it('New Machine from Image asks first where the image is: a file or a URL', async () => {
      await runFromPalette(page, 'New Machine from Image');
      await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Download from a URL' }).waitFor();
      await workbench.shot(`dev-machine-new-from-image-${name}`);
      await page.keyboard.press('Escape');
    });

    it('Connect with Remote-SSH without the Remote-SSH extension names it and offers an SSH terminal', async () => {
      await row().hover();
      await row().getByRole('button', { name: 'Connect with Remote-SSH' }).click();
      const dialog = page.locator('.monaco-dialog-box');
      await dialog.waitFor({ timeout: 15_000 });
      assert.match((await dialog.textContent()) ?? '', /Remote - SSH/);
      await workbench.shot(`dev-machine-no-remote-ssh-${name}`);
      await page.keyboard.press('Escape');
    });
  });
}
