import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { EXTENSION_ID, extensionApi, MiB, until, useFreshLibrary } from './running-extension';

// This file runs first (files load in name order): nothing but start-up has touched the extension yet.
describe('Activation', () => {
  it('activates when start-up has finished, cheaply: with no dev machine set it reads nothing and shows no status item', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, 'the extension is loaded');
    // No view opened and no command run: only onStartupFinished can have activated it.
    await until(() => ext.isActive, 'start-up finished to activate the extension', 20_000);
    const api = ext.exports as Awaited<ReturnType<typeof extensionApi>>;
    console.log(`      activation with no dev machine set: ${api.activationMs.toFixed(1)} ms`);
    assert.ok(api.activationMs < 100, `activation took ${api.activationMs.toFixed(1)} ms`);
    assert.equal(api.libraryOpened, false, 'activation opened the library');
    assert.equal(api.statusShown, false);
  });

  it('with a dev machine set, its status item shows without the view, and the work it adds is measured', async () => {
    const api = await extensionApi();
    const library = await useFreshLibrary(api);
    try {
      await library.lib.createMachine('dev-vm', { diskSize: 64 * MiB });
      const started = performance.now();
      await vscode.workspace.getConfiguration('vmsnap').update('devMachine', 'dev-vm', vscode.ConfigurationTarget.Global);
      await until(() => api.statusShown && api.statusText.includes('dev-vm'), 'the dev machine’s status item', 10_000);
      // What a window with the setting does after activation: open the library, read the machine, show the item.
      console.log(`      activation with a dev machine set: ${api.activationMs.toFixed(1)} ms, then ${(performance.now() - started).toFixed(1)} ms until its status item shows`);
    } finally {
      await vscode.workspace.getConfiguration('vmsnap').update('devMachine', undefined, vscode.ConfigurationTarget.Global);
      await library.dispose();
    }
  });

  it('opening the Machines view shows it, the extension being active already', async () => {
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    const api = await extensionApi();
    assert.ok(api.activationMs < 100, `activation took ${api.activationMs.toFixed(1)} ms`);
  });
});
