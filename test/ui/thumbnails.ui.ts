// UI test: snapshot thumbnails in the real workbench (code-server + Chromium): the tree's tooltip, the Snapshot
// Details panel with its buttons, and the comparison table, in the dark and the light theme. The guest is the
// counting boot sector on TCG with a VGA screen (SeaBIOS's boot text); every QEMU is ended after.
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FrameLocator, Page } from 'playwright-core';
import { Library, type SnapshotInfo } from '../../src/engine/machine';
import { runningPid, stopMachine } from '../../src/engine/runtime';
import { ACCEL, libraryWithCountingGuest, waitForCounts } from '../support/guest-machines';
import { chooseFromContextMenu, openWorkbench, runFromPalette, treeSettled, waitFor, type Workbench } from './workbench';

/** In the page: an image's decoded width (0 until it loaded). An inline arrow: nothing the page lacks is added to it. */
const naturalWidth = (img: unknown): number => (img as { naturalWidth: number }).naturalWidth;

describe('UI: snapshot thumbnails (tooltip, details panel, comparison table)', function () {
  this.timeout(240_000);
  let workbench: Workbench;
  let page: Page;
  let lib: Library;
  let libraryDir: string;
  let folder: string;
  let booted: SnapshotInfo;
  let off: SnapshotInfo;

  const shot = (name: string) => workbench.shot(name);
  const snapshotRow = (name: string) => page.getByRole('treeitem', { name: new RegExp(`^${name}\\b`) }).first();
  /** The content of the webview in sight (VS Code nests it in two frames; a hidden panel's frames are gone). */
  const activeWebview = (): FrameLocator => page.locator('iframe.webview.ready').last().contentFrame().locator('iframe#active-frame').contentFrame();

  before(async () => {
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-thumbs-'));
    const guest = await libraryWithCountingGuest(libraryDir, join(libraryDir, 'guest.raw'));
    lib = guest.lib;
    folder = guest.machine.folder;
    await lib.takeSnapshot('guest', 'Fresh', { description: 'never ran: no picture' });
    const started = await lib.startMachine('guest');
    await waitForCounts(started.serialLog, 5);
    booted = await lib.takeSnapshot('guest', 'Booted', { description: 'SeaBIOS booted the counting guest' });
    assert.ok(booted.thumbnail !== null && existsSync(booted.thumbnail), 'the running snapshot has a thumbnail');
    await lib.stopMachine('guest', { force: true });
    off = await lib.takeSnapshot('guest', 'Off', { description: 'taken powered off: the last screen' });
    assert.ok(off.thumbnail !== null);
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir, 'vmsnap.accelerator': ACCEL === 'kvm' ? 'kvm' : 'tcg' });
    page = workbench.page;
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    if (!(await page.getByRole('treeitem', { name: /^guest/ }).first().isVisible())) await icon.click();
    const machineRow = page.getByRole('treeitem', { name: /^guest/ }).first();
    await machineRow.waitFor({ timeout: 30_000 });
    if ((await machineRow.getAttribute('aria-expanded')) !== 'true') await machineRow.click();
    await snapshotRow('Booted').waitFor({ timeout: 30_000 });
    await treeSettled(page);
  });

  afterEach(async function () {
    await workbench?.shotIfFailed(this.currentTest);
  });

  after(async () => {
    if (folder) await stopMachine(folder, { force: true }).catch(() => {});
    await workbench?.close();
    if (libraryDir) rmSync(libraryDir, { recursive: true, force: true });
  });

  /** Hovers a snapshot row until its tooltip shows, and returns the tooltip's picture's source (or null). */
  async function tooltipPicture(name: string): Promise<string | null> {
    const hover = page.locator('.monaco-hover:visible, .workbench-hover-container:visible').last();
    await waitFor(
      async () => {
        await page.mouse.move(0, 0);
        await snapshotRow(name).hover();
        await hover.waitFor({ timeout: 4000 });
        return (await hover.textContent())?.includes(name) === true;
      },
      `the tooltip of "${name}"`,
      30_000,
    );
    await page.waitForTimeout(300); // the picture decodes
    const img = hover.locator('img');
    return (await img.count()) > 0 ? await img.first().getAttribute('src') : null;
  }

  it('the tree\'s tooltip shows the picture of the screen; a snapshot without one says so', async () => {
    const src = await tooltipPicture('Booted');
    assert.ok(src?.startsWith('data:image/png;base64,'), `a PNG in the tooltip, got ${src?.slice(0, 40)}`);
    const natural = await page.locator('.monaco-hover:visible img, .workbench-hover-container:visible img').last().evaluate(naturalWidth);
    assert.equal(natural, 240, 'the 240 px thumbnail is decoded and shown');
    await shot('thumbnails-tooltip-dark');
    assert.equal(await tooltipPicture('Fresh'), null);
    // The hover shows "Loading..." until the tooltip is resolved.
    await page.locator('.monaco-hover:visible, .workbench-hover-container:visible').last().getByText(/No picture of the screen/).waitFor({ timeout: 15_000 });
    await page.mouse.move(0, 0);
  });

  it('Show Snapshot Details opens the panel: the picture, name, description, size and what depends on it', async () => {
    await chooseFromContextMenu(page, snapshotRow('Booted'), 'Show Snapshot Details');
    const view = activeWebview();
    await view.locator('h1#name', { hasText: 'Booted' }).waitFor({ timeout: 30_000 });
    const img = view.locator('img#thumbnail');
    await waitFor(async () => (await img.evaluate(naturalWidth)) === 240, 'the picture to load');
    assert.match((await view.locator('#description').textContent()) ?? '', /SeaBIOS booted/);
    const facts = (await view.locator('table').textContent()) ?? '';
    assert.match(facts, /Depends on it.*snapshot “Off”/s);
    assert.match(facts, /Memory.*Yes/s);
    await page.waitForTimeout(500);
    await shot('snapshot-details-dark');
  });

  it('the comparison table shows the picture in the snapshot rows', async () => {
    await chooseFromContextMenu(page, snapshotRow('Booted'), 'Show in Comparison Table');
    const view = activeWebview();
    await view.locator('table').first().waitFor({ timeout: 30_000 });
    await waitFor(async () => (await view.locator('img.thumbnail').count()) === 2, 'a picture in the two snapshot rows that have one');
    await page.waitForTimeout(500);
    await shot('thumbnails-compare-dark');
  });

  it('in the light theme too', async () => {
    await runFromPalette(page, 'Toggle between Light/Dark Themes');
    await page.waitForTimeout(1500);
    await chooseFromContextMenu(page, snapshotRow('Booted'), 'Show Snapshot Details');
    const view = activeWebview();
    await view.locator('h1#name', { hasText: 'Booted' }).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(800);
    await shot('snapshot-details-light');
    await tooltipPicture('Booted');
    await shot('thumbnails-tooltip-light');
    await page.mouse.move(0, 0);
  });

  it('the panel\'s buttons run the commands with their confirmations: Clone asks, Delete removes the snapshot and its picture, Revert (asking only when something would be lost) brings it back running', async () => {
    await chooseFromContextMenu(page, snapshotRow('Off'), 'Show Snapshot Details');
    let view = activeWebview();
    await view.locator('h1#name', { hasText: 'Off' }).waitFor({ timeout: 30_000 });
    // Clone…: the clone flow asks its first question; cancelled here.
    await view.getByRole('button', { name: 'Clone…' }).click();
    await page.locator('.quick-input-widget:visible').waitFor({ timeout: 15_000 });
    await page.keyboard.press('Escape');
    // Delete…: the tree's confirmation (a quick pick whose first, focused choice keeps it), then the snapshot and
    // its picture are gone and the panel says so.
    view = activeWebview();
    await view.getByRole('button', { name: 'Delete…' }).click();
    const question = page.locator('.quick-input-widget:visible');
    await question.waitFor({ timeout: 15_000 });
    await question.locator('.quick-input-list-entry', { hasText: 'Delete' }).first().click();
    const dialog = page.locator('.monaco-dialog-box');
    await waitFor(async () => !existsSync(off.thumbnail!), 'the snapshot\'s picture to be deleted with it');
    await activeWebview().getByText('no longer exists').waitFor({ timeout: 15_000 });
    assert.deepEqual((await lib.show('guest')).snapshots.map((s) => s.name), ['Fresh', 'Booted']);
    // Revert: the tree's question (plain Revert), then the machine runs again from the snapshot's memory.
    await treeSettled(page);
    await chooseFromContextMenu(page, snapshotRow('Booted'), 'Show Snapshot Details');
    view = activeWebview();
    await view.locator('h1#name', { hasText: 'Booted' }).waitFor({ timeout: 30_000 });
    await view.getByRole('button', { name: 'Revert to It' }).click();
    // The tree's question comes only when something unsaved would be lost (here: nothing, unless QEMU wrote).
    await waitFor(async () => (await dialog.isVisible()) || (await runningPid(folder)) !== null, 'the question or the revert', 30_000);
    if (await dialog.isVisible()) await dialog.getByRole('button', { name: 'Revert', exact: true }).click();
    await waitFor(async () => (await runningPid(folder)) !== null, 'the machine to run from the snapshot', 60_000);
    await page.waitForTimeout(500);
    await shot('snapshot-details-after-revert-light');
  });
});
