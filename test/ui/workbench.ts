// The UI tests' workbench: code-server with the extension under development, driven by Debian's Chromium.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { openChromium, type Chromium } from '../../scripts/vscode/browser';
import { startCodeServer, type CodeServer } from '../../scripts/vscode/code-server';
import { ROOT } from '../../scripts/vscode/host';
import { scratchWorkspace } from '../../scripts/vscode/workspace';

const ARTIFACTS = join(ROOT, 'test-artifacts');

export interface Workbench {
  page: Page;
  /** code-server's pid, which leads its process group (the extension host is in it). */
  serverPid: number;
  /** A screenshot in test-artifacts/NAME.png. */
  shot(name: string): Promise<void>;
  /** For afterEach: a failed test leaves a picture of what the workbench showed. */
  shotIfFailed(test: Mocha.Test | undefined): Promise<void>;
  close(): Promise<void>;
}

/** A clean workbench on a scratch workspace with these user settings, loaded and showing. */
export async function openWorkbench(settings: Record<string, unknown>): Promise<Workbench> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const workspace = scratchWorkspace();
  let server: CodeServer | undefined;
  let browser: Chromium | undefined;
  const close = async (): Promise<void> => {
    await browser?.close();
    await server?.stop();
    rmSync(workspace, { recursive: true, force: true });
  };
  try {
    server = await startCodeServer({ workspace, testDriver: true, settings: { 'workbench.colorTheme': 'Default Dark Modern', ...settings } });
    browser = await openChromium();
    const page = browser.page;
    await page.goto(server.url(workspace, [['extensionDevelopmentPath', server.remote(ROOT)], ['skipWelcome', 'true']]));
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    const shot = async (name: string): Promise<void> => {
      await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
    };
    return {
      page,
      serverPid: server.pid,
      shot,
      async shotIfFailed(test) {
        if (test?.state !== 'failed') return;
        await shot(`failed-${test.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`).catch(() => {});
        // CI keeps only the log: say in words what the screenshot shows.
        console.log(await describe(page).catch((e: unknown) => `(the workbench could not be read: ${String(e)})`));
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Right-clicks `target` and chooses `item` from its context menu as a person does: point at it, then choose it
 * (Enter). A click the instant the menu opens is sometimes ignored: a failure screenshot showed the menu still
 * open on the highlighted item.
 */
export async function chooseFromContextMenu(page: Page, target: Locator, item: string | RegExp): Promise<void> {
  await target.click({ button: 'right' });
  await page.getByRole('menuitem', { name: item }).hover();
  await page.keyboard.press('Enter');
}

/** What a person would see that explains a failure: messages, an open dialog or palette, and where the focus is. */
async function describe(page: Page): Promise<string> {
  const texts = async (selector: string): Promise<string[]> =>
    (await page.locator(selector).allTextContents()).map((t) => t.replace(/\s+/g, ' ').trim()).filter((t) => t !== '');
  const focus = await page.evaluate(`(() => {
    const e = document.activeElement;
    return e ? (e.tagName.toLowerCase() + '.' + [...e.classList].join('.') + ' ' + (e.getAttribute('aria-label') ?? '')).trim() : 'nothing';
  })()`);
  return [
    `      the workbench showed: notifications [${(await texts('.notification-toast .notification-list-item-message')).join(' | ')}]`,
    `      dialog [${(await texts('.monaco-dialog-box .dialog-message-text')).join(' | ')}]`,
    `      quick input [${(await texts('.quick-input-widget:visible .quick-input-title')).join(' | ')}]`,
    `      focus: ${focus}`,
  ].join('\n');
}

/**
 * Waits until the tree has not redrawn for `quietMs`, as a person waits for the screen to settle. A redraw of a
 * focused tree takes the focus back, and the command palette closes when it loses the focus.
 */
export async function treeSettled(page: Page, quietMs = 500, timeoutMs = 15_000): Promise<void> {
  // A string, not a function: the page has no DOM types here, and the test runner's transform would add helpers
  // the page does not have.
  await page.evaluate(`new Promise((resolve, reject) => {
    const tree = document.querySelector('.tree-explorer-viewlet-tree-view');
    if (!tree) return resolve();
    const observer = new MutationObserver(() => {
      clearTimeout(quiet);
      quiet = setTimeout(done, ${quietMs});
    });
    let quiet = setTimeout(done, ${quietMs});
    const giveUp = setTimeout(() => {
      observer.disconnect();
      clearTimeout(quiet);
      reject(new Error('The tree kept redrawing for ${timeoutMs} ms.'));
    }, ${timeoutMs});
    observer.observe(tree, { subtree: true, childList: true, attributes: true, characterData: true });
    function done() {
      observer.disconnect();
      clearTimeout(giveUp);
      resolve();
    }
  })`);
}

/** Runs a command from the palette (F1), as a person does once the tree has settled. */
export async function runFromPalette(page: Page, command: string): Promise<void> {
  await treeSettled(page);
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').fill(`>${command}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: command }).first().waitFor();
  await page.keyboard.press('Enter');
}

/** Polls `check` (errors count as not yet) until it holds. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
