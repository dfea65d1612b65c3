// UI test: the comparison table at 1280×800 and in a narrow editor group, in the dark, light and high-contrast
// themes. Screenshots in test-artifacts/compare-{dark,light,hc}.png and compare-narrow-{dark,light}.png.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FrameLocator, Page } from 'playwright-core';
import { Library } from '../../src/engine/machine';
import { openWorkbench, runFromPalette, waitFor, type Workbench } from './workbench';

const MiB = 1024 * 1024;

describe('UI: the comparison table at real sizes and in every theme', function () {
  this.timeout(240_000);
  let workbench: Workbench;
  let page: Page;
  let libraryDir: string;

  before(async () => {
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-compare-'));
    const lib = await Library.open(libraryDir);
    const m = await lib.createMachine('dev-vm', { diskSize: 256 * MiB, note: 'The machine I develop in' });
    const write = async (pattern: number, at: number, size: string) =>
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${at * MiB} ${size}`, await lib.diskPath(m.id)], { stdio: 'ignore' });
    const base = await lib.takeSnapshot(m.id, 'Fresh install', { description: 'Debian 12, cloud-init done' });
    await write(0x11, 0, '12M');
    await lib.takeSnapshot(m.id, 'Toolchain', { description: 'git, node 22, build-essential' });
    await write(0x22, 16, '4M');
    const long = await lib.takeSnapshot(m.id, 'Checkpoint 2026-12-06 before npm upgrade', { description: 'automatic checkpoint' });
    await write(0x33, 24, '2M');
    await lib.clone(m.id, 'ci-runner', { kind: 'linked', from: base.id });
    await lib.clone(m.id, 'review-box', { kind: 'full', from: long.id });
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir });
    page = workbench.page;
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  afterEach(async function () {
    await workbench?.shotIfFailed(this.currentTest);
  });

  after(async () => {
    await workbench?.close();
    if (libraryDir) rmSync(libraryDir, { recursive: true, force: true });
  });

  const frame = (): FrameLocator => page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');

  /** The theme picker (Ctrl+K Ctrl+T), as a person switches themes; waits for the workbench to repaint. */
  async function theme(name: string): Promise<void> {
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+K');
    await page.keyboard.press('Control+T');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor();
    await input.fill(name);
    await waitFor(async () => ((await page.locator('.quick-input-list .monaco-list-row.focused').first().getAttribute('aria-label')) ?? '').startsWith(name), `the theme ${name} to be offered`);
    await page.keyboard.press('Enter');
    await page.waitForTimeout(1000);
  }

  /** No row of the family table wraps its name, date or size, and the machines' facts are said once each. */
  async function checkLayout(): Promise<void> {
    const f = frame();
    await f.locator('table.rows tbody tr').first().waitFor({ timeout: 30_000 });
    assert.ok((await f.locator('table.rows tbody tr').count()) >= 6);
    assert.equal(await f.locator('table.machines tbody tr').count(), 3);
    assert.equal(await f.locator('table.rows thead th', { hasText: 'UUID' }).count(), 0);
    const uuidHeights = await f.locator('table.machines tbody td code').evaluateAll((codes) => codes.map((c) => c.getBoundingClientRect().height));
    assert.ok(uuidHeights.every((h) => h < 24), `a UUID or MAC wraps: heights ${uuidHeights.join(', ')}`);
  }

  it('at 1280×800: the tree, its legend and the family’s rows in sight, in dark, light and high contrast', async () => {
    await page.getByRole('tab', { name: /VM Snapshots/ }).waitFor({ timeout: 60_000 });
    await runFromPalette(page, 'VM Snapshots: Open Comparison Table');
    await checkLayout();
    // The first rows of the table are in the first screen, under the tree.
    const top = await frame().locator('table.rows tbody tr').nth(3).evaluate((tr) => tr.getBoundingClientRect().bottom);
    assert.ok(top < 800 - 60, `the fourth row ends at ${top}px`);
    await workbench.shot('compare-dark');
    await theme('Light Modern');
    await checkLayout();
    const track = await frame()
      .locator('.bar')
      .first()
      .evaluate((b) => b.ownerDocument.defaultView?.getComputedStyle(b).backgroundImage ?? '');
    assert.match(track, /rgba?\(/);
    await workbench.shot('compare-light');
    await theme('Dark High Contrast');
    await checkLayout();
    await workbench.shot('compare-hc');
  });

  it('in a narrow editor group: the tables scroll sideways instead of wrapping a UUID over four lines', async () => {
    await theme('Dark Modern');
    await page.keyboard.press('Escape');
    // A text editor on the left, the table moved into a group of its own on the right: half the editor area.
    await runFromPalette(page, 'File: New Untitled Text File');
    await runFromPalette(page, 'VM Snapshots: Open Comparison Table');
    await frame().locator('table.rows tbody tr').first().waitFor({ timeout: 30_000 });
    await runFromPalette(page, 'View: Move Editor into Right Group');
    await waitFor(async () => (await page.locator('.editor-group-container').count()) >= 2, 'two editor groups');
    await page.waitForTimeout(1000);
    await checkLayout();
    await workbench.shot('compare-narrow-dark');
    await theme('Light Modern');
    await checkLayout();
    await workbench.shot('compare-narrow-light');
  });
});
