// UI tests: a person's clicks in the real workbench (code-server + Debian's Chromium via playwright-core).
// Run by `npm run test:vscode` (or alone: npx mocha --no-config --require tsx/cjs --extension ts test/ui/*.ui.ts).
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FrameLocator, Page } from 'playwright-core';
import { Library } from '../../src/engine/machine';
import { chooseFromContextMenu, openWorkbench, runFromPalette, waitFor, type Workbench } from './workbench';

const MiB = 1024 * 1024;

describe('UI: the extension in a real workbench', function () {
  this.timeout(180_000);
  let workbench: Workbench;
  let page: Page;
  let lib: Library;
  let libraryDir: string;
  let machineId: string;
  let baseId: string;

  const shot = (name: string) => workbench.shot(name);

  before(async () => {
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-library-'));
    lib = await Library.open(libraryDir);
    const m = await lib.createMachine('dev-vm', { diskSize: 256 * MiB, note: 'The machine I develop in' });
    machineId = m.id;
    baseId = (await lib.takeSnapshot(m.id, 'Base', { description: 'Debian 12, fresh install' })).id;
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 4M', await lib.diskPath(m.id)], { stdio: 'ignore' });
    await lib.takeSnapshot(m.id, 'Tools installed', { description: 'git, node, build-essential' });
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 8M 2M', await lib.diskPath(m.id)], { stdio: 'ignore' });
    await lib.clone(m.id, 'test-runner', { kind: 'linked', from: baseId });
    // Unsaved changes, so that Revert asks.
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 16M 1M', await lib.diskPath(m.id)], { stdio: 'ignore' });
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir });
    page = workbench.page;
  });

  afterEach(async function () {
    await workbench?.shotIfFailed(this.currentTest);
  });

  after(async () => {
    await workbench?.close();
    if (libraryDir) rmSync(libraryDir, { recursive: true, force: true });
  });

  const row = (name: string | RegExp) => page.getByRole('treeitem', { name });

  it('opens the sidebar from its activity-bar icon and shows the snapshot tree', async () => {
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    // The server remembers whether the sidebar was open: only click when it is not.
    if (!(await row(/^dev-vm/).isVisible())) await icon.click();
    await row(/^dev-vm/).first().waitFor({ timeout: 30_000 });
    if ((await row(/^dev-vm/).first().getAttribute('aria-expanded')) !== 'true') await row(/^dev-vm/).first().click();
    await row(/^Tools installed/).waitFor();
    await row(/^You are here/).first().waitFor();
    await shot('sidebar');
    const labels = await page.locator('.monaco-list-row[role="treeitem"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('aria-label') ?? ''));
    assert.ok(labels.some((l) => l.startsWith('Base')), labels.join('\n'));
  });

  it('right-click a snapshot, Revert, confirm: the machine is back at that snapshot', async () => {
    await chooseFromContextMenu(page, row(/^Base/), /Revert to Snapshot/);
    const dialog = page.locator('.monaco-dialog-box');
    await dialog.waitFor();
    assert.match((await dialog.textContent()) ?? '', /Revert “dev-vm” to “Base”\?/);
    await shot('revert-dialog');
    // Enter must not throw the changes away: the focused (default) button keeps them in a snapshot first.
    const focused = await page.evaluate('document.activeElement ? document.activeElement.textContent : ""');
    assert.equal(focused, 'Snapshot Current State, Then Revert');
    await dialog.getByRole('button', { name: 'Revert', exact: true }).click();
    await waitFor(async () => (await lib.show(machineId)).current === baseId, 'the engine to show the machine on Base');
    // "You are here" moved under Base: right after Base's child snapshot and before the clone.
    await waitFor(async () => {
      const labels = await page.locator('.monaco-list-row[role="treeitem"]').evaluateAll((rows) => rows.map((r) => `${r.getAttribute('aria-level')} ${(r.getAttribute('aria-label') ?? '').split(',')[0]}`));
      const base = labels.findIndex((l) => / Base/.test(l));
      return labels[base + 2]?.includes('You are here') === true;
    }, 'the tree to show You are here under Base');
    await shot('after-revert');
  });

  it('takes a snapshot from the command palette', async () => {
    await runFromPalette(page, 'VM Snapshots: Take Snapshot');
    const input = page.locator('.quick-input-widget input');
    // The tree's selection ("You are here" of dev-vm) is the machine; otherwise the palette asks.
    const title = page.locator('.quick-input-widget .quick-input-title');
    await waitFor(async () => /Take Snapshot of|Which machine/.test((await title.textContent()) ?? ''), 'the first question');
    if (/Which machine/.test((await title.textContent()) ?? '')) {
      await input.fill('dev-vm');
      await page.keyboard.press('Enter');
    }
    await waitFor(async () => /Take Snapshot of “dev-vm”/.test((await title.textContent()) ?? ''), 'the name box');
    await input.fill('From the palette');
    await shot('palette-name');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await input.getAttribute('placeholder'))?.includes('clean install') === true, 'the description box');
    await input.fill('typed in the UI test');
    await page.keyboard.press('Enter');
    await waitFor(async () => (await lib.show(machineId)).snapshots.some((s) => s.name === 'From the palette' && s.description === 'typed in the UI test'), 'the snapshot in the engine');
    await row(/^From the palette/).waitFor();
  });

  it('opens the comparison table and reads a row', async () => {
    await page.getByRole('button', { name: 'Open Comparison Table' }).first().click();
    const frame: FrameLocator = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    const palette = frame.locator('table.rows tbody tr', { hasText: 'From the palette' });
    await palette.waitFor({ timeout: 30_000 });
    const cells = await palette.locator('td').allTextContents();
    assert.equal(cells[0], 'snapshot');
    assert.equal(cells[1], 'From the palette');
    assert.equal(cells[5], 'typed in the UI test');
    const clone = await frame.locator('table.rows tbody tr', { hasText: 'test-runner' }).locator('td').allTextContents();
    assert.equal(clone[0], 'linked clone');
    assert.equal(clone[4], 'snapshot "Base" of "dev-vm"');
    // Sorting by size puts the biggest row first.
    await frame.getByRole('button', { name: /Size on disk/ }).click();
    await frame.getByRole('button', { name: /Size on disk/ }).click();
    await frame.locator('th[aria-sort="descending"]').waitFor();
    const sizes = await frame.locator('table.rows tbody tr td:nth-child(4)').allTextContents();
    const bytes = sizes.map(parseSize);
    assert.deepEqual(bytes, [...bytes].sort((a, b) => b - a), `sorted by size: ${sizes.join(', ')}`);
    // Keyboard: the first row takes focus, the arrow key moves the selection down.
    await frame.locator('table.rows tbody tr').first().click();
    await page.keyboard.press('ArrowDown');
    const selected = await frame.locator('table.rows tbody tr[aria-selected="true"]').getAttribute('data-id');
    const second = await frame.locator('table.rows tbody tr').nth(1).getAttribute('data-id');
    assert.equal(selected, second);
    await shot('comparison');
  });

  it('restores the comparison table after the window reloads', async () => {
    // Reload as a user does (Developer: Reload Window): the workbench saves its editor state before it goes,
    // which a bare page reload can cut short.
    await Promise.all([page.waitForEvent('framenavigated', { timeout: 60_000 }), runFromPalette(page, 'Developer: Reload Window')]);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    const frame: FrameLocator = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    await frame.locator('table.rows tbody tr', { hasText: 'From the palette' }).waitFor({ timeout: 60_000 });
  });
});

function parseSize(text: string): number {
  const m = /([\d.]+)\s*(B|KiB|MiB|GiB)/.exec(text);
  if (!m) return 0;
  return Number(m[1]) * 1024 ** ['B', 'KiB', 'MiB', 'GiB'].indexOf(m[2]!);
}
