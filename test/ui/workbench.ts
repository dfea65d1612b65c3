// The UI tests' workbench: code-server with the extension under development, driven by Debian's Chromium.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { openChromium, type Chromium } from '../../scripts/vscode/browser';
import { startCodeServer, type CodeServer } from '../../scripts/vscode/codeServer';
import { ROOT } from '../../scripts/vscode/host';
import { scratchWorkspace } from '../../scripts/vscode/workspace';

const ARTIFACTS = join(ROOT, 'test-artifacts');

export interface Workbench {
  page: Page;
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
    server = await startCodeServer({ workspace, settings: { 'workbench.colorTheme': 'Default Dark Modern', ...settings } });
    browser = await openChromium();
    const page = browser.page;
    await page.goto(server.url(workspace, [['extensionDevelopmentPath', server.remote(ROOT)], ['skipWelcome', 'true']]));
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    const shot = async (name: string): Promise<void> => {
      await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
    };
    return {
      page,
      shot,
      async shotIfFailed(test) {
        if (test?.state === 'failed') await shot(`failed-${test.title.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`).catch(() => {});
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

/** Polls `check` (errors count as not yet) until it holds. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}.`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
