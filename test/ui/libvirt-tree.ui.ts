// UI test: a libvirt connection beside the library in the Machines view of a real workbench (code-server), against
// the real daemons (test/support/libvirt.ts): its root, domain and snapshots; right-click a libvirt snapshot →
// Revert works (checked with virsh snapshot-current), Clone from Snapshot is offered; Rename, which libvirt cannot
// do, is not in the menu; an unreachable connection is one row with its reason. Screenshots in
// test-artifacts/libvirt-tree*.png.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { Library } from '../../src/engine/machine';
import { defineCountingDomainAsync, removeTestDomainsAsync, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virshOkAsync, type Daemons } from '../support/libvirt';
import { chooseFromContextMenu, openWorkbench, treeSettled, waitFor, type Workbench } from './workbench';

const MiB = 1024 * 1024;
const UNREACHABLE = 'qemu+ssh://root@127.0.0.1:1/system';

describe('UI: libvirt connections in the Machines view', function () {
  this.timeout(300_000);
  let workbench: Workbench | undefined;
  let page: Page;
  let daemons: Daemons | undefined;
  let libraryDir = '';
  let scratch = '';
  const prefix = testPrefix();
  const domain = `${prefix}web`;

  before(async function () {
    // The daemons and one domain with two snapshots: minutes on a slow host while libvirt probes QEMU.
    this.timeout(900_000);
    requireLibvirt(this);
    daemons = await startDaemons();
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-ui-libvirt-'));
    shareWithQemu(scratch);
    await defineCountingDomainAsync(SYSTEM_URI, scratch, domain);
    await virshOkAsync(SYSTEM_URI, 'snapshot-create-as', domain, 'Fresh boot', 'the boot-sector guest, never started');
    await virshOkAsync(SYSTEM_URI, 'snapshot-create-as', domain, 'Configured', 'after the set-up');
    libraryDir = mkdtempSync(join(tmpdir(), 'vmsnap-ui-libvirt-lib-'));
    const lib = await Library.open(libraryDir);
    const m = await lib.createMachine('dev-vm', { diskSize: 64 * MiB });
    await lib.takeSnapshot(m.id, 'Base', { description: 'fresh install' });
    await lib.takeSnapshot(m.id, 'Tools installed');
    workbench = await openWorkbench({ 'vmsnap.libraryFolder': libraryDir, 'vmsnap.libvirt.connections': [SYSTEM_URI, UNREACHABLE], 'workbench.sideBar.location': 'left' });
    page = workbench.page;
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  afterEach(async function () {
    await workbench?.shotIfFailed(this.currentTest);
  });

  after(async function () {
    this.timeout(300_000);
    await workbench?.close();
    await removeTestDomainsAsync(SYSTEM_URI, prefix);
    await daemons?.stop();
    if (libraryDir !== '') rmSync(libraryDir, { recursive: true, force: true });
    if (scratch !== '') rmSync(scratch, { recursive: true, force: true });
  });

  const row = (name: string | RegExp) => page.getByRole('treeitem', { name });
  const labels = (): Promise<string[]> =>
    page.locator('.monaco-list-row[role="treeitem"]').evaluateAll((rows) => rows.map((r) => `${r.getAttribute('aria-level')} ${(r.getAttribute('aria-label') ?? '').split(',')[0]}`));

  it('shows the library, the libvirt connection with its domain’s snapshots, and the unreachable one as one row', async () => {
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    if (!(await row(/^dev-vm/).isVisible())) await icon.click();
    await row(/^libvirt — qemu:\/\/\/system/).waitFor({ timeout: 60_000 });
    // The host may have other domains: with more than three they start collapsed.
    const domainRow = row(new RegExp(`^${domain}`));
    await domainRow.waitFor({ timeout: 60_000 });
    if ((await domainRow.getAttribute('aria-expanded')) === 'false') await domainRow.click();
    await row(/^Configured/).waitFor({ timeout: 60_000 });
    await row(/^libvirt — 127\.0\.0\.1/).waitFor({ timeout: 60_000 });
    await treeSettled(page);
    await page.mouse.move(0, 0);
    await workbench!.shot('libvirt-tree');
    const shown = await labels();
    const at = (re: RegExp): number => shown.findIndex((l) => re.test(l));
    assert.ok(at(/dev-vm/) < at(/libvirt — qemu/), shown.join('\n'));
    assert.ok(at(/libvirt — qemu/) < at(new RegExp(domain)) && at(new RegExp(domain)) < at(/Fresh boot/) && at(/Fresh boot/) < at(/Configured/), shown.join('\n'));
    // Fresh boot > Configured > You are here: one level deeper each.
    const level = (re: RegExp): number => Number(shown[at(re)]?.split(' ')[0]);
    assert.equal(level(/Configured/), level(/Fresh boot/) + 1);
    assert.ok(shown.slice(at(/Configured/) + 1, at(/Configured/) + 2).some((l) => l.startsWith(`${level(/Configured/) + 1} You are here`)), shown.join('\n'));

    // A narrow sidebar, as many keep it.
    await page.setViewportSize({ width: 560, height: 700 });
    await treeSettled(page);
    await workbench!.shot('libvirt-tree-narrow');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('right-click a libvirt snapshot: no Rename (libvirt cannot), Revert, confirm: libvirt is back at that snapshot', async () => {
    await row(/^Fresh boot/).click({ button: 'right' });
    const menu = page.getByRole('menuitem');
    await menu.first().waitFor();
    const items = (await menu.allTextContents()).map((t) => t.trim());
    assert.ok(items.some((t) => /Revert to Snapshot/.test(t)), items.join(' | '));
    assert.ok(!items.some((t) => /Rename/.test(t)), `no Rename: ${items.join(' | ')}`);
    // An internal snapshot of a powered-off domain: a full clone from it is offered.
    assert.ok(items.some((t) => /Clone from Snapshot/.test(t)), items.join(' | '));
    await workbench!.shot('libvirt-snapshot-menu');
    await page.keyboard.press('Escape');
    await chooseFromContextMenu(page, row(/^Fresh boot/), /Revert to Snapshot/);
    const dialog = page.locator('.monaco-dialog-box');
    await dialog.waitFor();
    assert.match((await dialog.textContent()) ?? '', new RegExp(`Revert “${domain}” to “Fresh boot”\\?`));
    await dialog.getByRole('button', { name: 'Revert', exact: true }).click();
    await waitFor(async () => (await virshOkAsync(SYSTEM_URI, 'snapshot-current', '--domain', domain, '--name')).trim() === 'Fresh boot', 'libvirt to be on “Fresh boot”', 120_000);
    // "You are here" moved under Fresh boot, beside Configured.
    await waitFor(async () => {
      const shown = await labels();
      const fresh = shown.findIndex((l) => / Fresh boot/.test(l));
      const level = Number(shown[fresh]?.split(' ')[0]);
      return shown.slice(fresh + 1, fresh + 3).some((l) => l.startsWith(`${level + 1} You are here`));
    }, 'the tree to show You are here under Fresh boot');
    await page.mouse.move(0, 0);
    await workbench!.shot('libvirt-after-revert');
  });
});
