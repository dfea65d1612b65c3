// README screenshots from a running `npm start`: npx tsx scripts/vscode/screenshots.ts URL
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openChromium } from './browser';
import { ROOT } from './host';

async function main(url: string): Promise<void> {
  const out = join(ROOT, 'docs', 'images');
  mkdirSync(out, { recursive: true });
  const browser = await openChromium({ width: 1280, height: 720 });
  try {
    const page = browser.page;
    await page.goto(url);
    const icon = page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    const vm = page.getByRole('treeitem', { name: /^dev-vm/ }).first();
    if (!(await vm.isVisible())) await icon.click();
    await vm.waitFor({ timeout: 30_000 });
    if ((await vm.getAttribute('aria-expanded')) !== 'true') await vm.click();
    const runner = page.getByRole('treeitem', { name: /^ci-runner/ }).last();
    if ((await runner.getAttribute('aria-expanded')) === 'false') await runner.click();
    await page.getByRole('treeitem', { name: /^Before npm upgrade/ }).hover();
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(out, 'sidebar.png') });
    await vm.click();
    await page.getByRole('button', { name: 'Open Comparison Table' }).first().click();
    const frame = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame');
    await frame.locator('table.rows tbody tr').first().waitFor({ timeout: 30_000 });
    await page.mouse.move(0, 0);
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(out, 'comparison.png') });
    console.log(`Screenshots in ${out}`);
  } finally {
    await browser.close();
  }
}

main(process.argv[2] ?? '').catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
