// Helpers for the extension-host suite: the running extension's test handle, a fresh library per test, scripted answers.
import * as assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { Library } from '../../src/engine/machine';
import type { TestHandle } from '../../src/extension/test-handle';
import type { TreeNode } from '../../src/extension/tree/nodes';
import type { PickItem, Prompter } from '../../src/extension/ui/prompter';

export const EXTENSION_ID = 'vmsnap.vmsnap';
export const MiB = 1024 * 1024;

export async function extensionApi(): Promise<TestHandle> {
  const ext = vscode.extensions.getExtension<TestHandle>(EXTENSION_ID);
  assert.ok(ext, `extension ${EXTENSION_ID} is not loaded`);
  return ext.isActive ? ext.exports : ext.activate();
}

/** A new, empty library the extension is pointed at (setting vmsnap.libraryFolder), removed by the returned function. */
export async function useFreshLibrary(api: TestHandle): Promise<{ dir: string; lib: Library; dispose(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmsnap-ext-'));
  await vscode.workspace.getConfiguration('vmsnap').update('libraryFolder', dir, vscode.ConfigurationTarget.Global);
  await until(() => api.libraryDir === dir, 'the extension to follow the libraryFolder setting');
  const lib = await Library.open(dir);
  return {
    dir,
    lib,
    async dispose() {
      // The extension may still be asking a machine's status (a lock file comes and goes): retry a busy folder.
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
}

export type FreshLibrary = Awaited<ReturnType<typeof useFreshLibrary>>;

/** A machine with snapshots Base > Installed (current under Installed), 64 MiB disk. */
export async function machineWithSnapshots(lib: Library, name = 'dev-vm') {
  const m = await lib.createMachine(name, { diskSize: 64 * MiB });
  const base = await lib.takeSnapshot(m.id, 'Base', { description: 'fresh install' });
  const installed = await lib.takeSnapshot(m.id, 'Installed', { description: 'tools installed' });
  return { machine: m, base, installed };
}

/** Polls until `check` holds (the tree refreshes asynchronously after file-system events). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The tree as text, one line per row, indented: what a person sees in the view. */
export async function treeText(api: TestHandle): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (nodes: TreeNode[], depth: number): Promise<void> => {
    for (const n of nodes) {
      const item = api.tree.getTreeItem(n);
      const label = typeof item.label === 'string' ? item.label : (item.label?.label ?? '');
      lines.push(`${'  '.repeat(depth)}${label}`);
      if (n.kind === 'machine' || n.kind === 'snapshot') await walk(await api.tree.getChildren(n), depth + 1);
    }
  };
  await walk(await api.tree.getChildren(), 0);
  return lines;
}

/** Answers the extension's questions from a script, in order; fails the test on a question it did not expect. */
export class ScriptedPrompter implements Prompter {
  readonly asked: string[] = [];
  private readonly answers: (string | undefined)[];

  constructor(...answers: (string | undefined)[]) {
    this.answers = answers;
  }

  private next(question: string): string | undefined {
    this.asked.push(question);
    if (this.answers.length === 0) throw new Error(`Unexpected question: ${question}`);
    return this.answers.shift();
  }

  get remaining(): number {
    return this.answers.length;
  }

  input(options: vscode.InputBoxOptions): Promise<string | undefined> {
    const answer = this.next(`input: ${options.title ?? ''} / ${options.prompt ?? ''} [${options.value ?? ''}]`);
    // Typing "=" accepts the prefilled value, as pressing Enter would.
    const value = answer === '=' ? options.value : answer;
    if (value !== undefined && options.validateInput) {
      return Promise.resolve(options.validateInput(value)).then((v) => {
        const message = typeof v === 'string' ? v : v?.message;
        const error = typeof v === 'string' || v?.severity === vscode.InputBoxValidationSeverity.Error;
        if (message && error) throw new Error(`The input box refused "${value}": ${message}`);
        return value;
      });
    }
    return Promise.resolve(value);
  }

  pick<T>(items: PickItem<T>[], options: vscode.QuickPickOptions): Promise<PickItem<T> | undefined> {
    const details = items.flatMap((i) => (i.detail ? [i.detail] : []));
    const answer = this.next(`pick: ${options.title ?? options.placeHolder ?? ''} {${items.map((i) => i.label).join(' | ')}}${details.length > 0 ? ` — ${details.join(' / ')}` : ''}`);
    if (answer === undefined) return Promise.resolve(undefined);
    const found = items.find((i) => i.label.includes(answer));
    if (!found) throw new Error(`No item "${answer}" among: ${items.map((i) => i.label).join(', ')}`);
    return Promise.resolve(found);
  }

  confirm(message: string, detail: string, buttons: string[]): Promise<string | undefined> {
    const answer = this.next(`confirm: ${message} — ${detail} {${buttons.join(' | ')}}`);
    if (answer === undefined) return Promise.resolve(undefined);
    const found = buttons.find((b) => b === answer) ?? buttons.find((b) => b.includes(answer));
    if (!found) throw new Error(`No button "${answer}" among: ${buttons.join(', ')}`);
    return Promise.resolve(found);
  }

  folder(title: string): Promise<vscode.Uri | undefined> {
    const a = this.next(`folder: ${title}`);
    return Promise.resolve(a === undefined ? undefined : vscode.Uri.file(a));
  }

  file(title: string): Promise<vscode.Uri | undefined> {
    const a = this.next(`file: ${title}`);
    return Promise.resolve(a === undefined ? undefined : vscode.Uri.file(a));
  }
}

/** Runs `fn` with scripted answers, then checks every answer was used. */
export async function answering<T>(api: TestHandle, answers: (string | undefined)[], fn: () => Thenable<T>): Promise<{ result: T; asked: string[] }> {
  const p = new ScriptedPrompter(...answers);
  const answeringNow = api.answerWith(p);
  try {
    const result = await fn();
    assert.equal(p.remaining, 0, `unused answers; asked: ${p.asked.join('\n')}`);
    return { result, asked: p.asked };
  } finally {
    answeringNow.dispose();
  }
}

