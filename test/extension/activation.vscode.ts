import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { EXTENSION_ID, extensionApi } from './running-extension';

// This file runs first (files load in name order): nothing has touched the extension yet.
describe('Activation', () => {
  it('is lazy: the extension is not active before its view opens or a command runs', () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, 'the extension is loaded');
    assert.equal(ext.isActive, false);
  });

  it('opening the Machines view activates it, in under 100 ms of extension-host time', async () => {
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
    const deadline = Date.now() + 10_000;
    while (!ext.isActive && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(ext.isActive, true, 'the view activated the extension');
    const api = await extensionApi();
    console.log(`      activation: ${api.activationMs.toFixed(1)} ms`);
    assert.ok(api.activationMs < 100, `activation took ${api.activationMs.toFixed(1)} ms`);
  });
});
