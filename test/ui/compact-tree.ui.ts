// UI test: the full and the compact snapshot tree in a narrow sidebar, toggled with the view's action.
// Screenshots in test-artifacts/tree-full.png and tree-compact.png.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Library } from '../../src/engine/machine';
import { openWorkbench, runFromPalette, treeSettled, waitFor, type Workbench } from './workbench';

const MiB = 1024 * 1024;

describe('UI: compact snapshot chains', function () {
  this.timeout(180_000);
  let workbench: Workbench;
  let page: Page;
  let libraryDir: string;

  before(async () => {
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-compact-'));
    const lib = await Library.open(libraryDir);
    const m = await lib.createMachine('build-box', { diskSize: 64 * MiB });
    const names = ['Fresh install', 'Updates', 'Toolchain', 'Node 22', 'Repo cloned', 'Deps installed', 'Tests green', 'Before refactor'];
    const ids: string[] = [];
    for (const n of names) ids.push((await lib.takeSnapshot(m.id, n)).id);
    // A line that branches off "Toolchain", where the current state is.
    await lib.revert(m.id, ids[2]!, { discardCurrent: true });
    await lib.takeSnapshot(m.id, 'Try Node 24');
    // A narrow sidebar, as people keep it.
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir, 'workbench.sideBar.location': 'left' });
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

  const row = (name: string | RegExp) => page.getByRole('treeitem', { name });
  const indent = async (name: RegExp): Promise<number> => Number(await row(name).first().getAttribute('aria-level'));

  it('shows every snapshot one indent below its parent by default, and a straight run at one indent when compact', async () => {
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    if (!(await row(/^build-box/).isVisible())) await icon.click();
    await row(/^Before refactor/).waitFor({ timeout: 30_000 });
    await treeSettled(page);
    assert.equal(await indent(/^Before refactor/), (await indent(/^Fresh install/)) + 7);
    await workbench.shot('tree-full');

    await runFromPalette(page, 'VM Snapshots: Show Snapshot Chains Compact');
    await waitFor(async () => (await indent(/^Before refactor/)) === (await indent(/^Updates/)) + 1, 'the compact tree');
    await treeSettled(page);
    assert.equal(await indent(/^Updates/), await indent(/^Fresh install/));
    assert.match((await row(/^Try Node 24/).first().textContent()) ?? '', /from “Toolchain”/);
    await workbench.shot('tree-compact');
  });
});
