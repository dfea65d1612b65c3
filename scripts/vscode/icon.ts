// The marketplace icon (PNG, 128×128) drawn from media/icon.svg by the same headless Chromium, once.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openChromium } from './browser';
import { ROOT } from './host';

export async function ensureIcon(): Promise<void> {
  const png = join(ROOT, 'media', 'icon.png');
  if (existsSync(png)) return;
  const svg = readFileSync(join(ROOT, 'media', 'icon.svg'), 'utf8');
  const browser = await openChromium({ width: 128, height: 128 });
  try {
    await browser.page.setContent(`<html><body style="margin:0;background:transparent">${svg}</body></html>`);
    await browser.page.locator('svg').screenshot({ path: png, omitBackground: true });
  } finally {
    await browser.close();
  }
}
