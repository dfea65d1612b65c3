// `npm run package`: the .vsix (bundled, no sources, tests or node_modules), checked for size and content, then
// installed into a scratch code-server with --install-extension and shown to activate there.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChromium } from './browser';
import { startCodeServer } from './code-server';
import { ROOT } from './host';
import { ensureIcon } from './icon';

const MAX_BYTES = 1024 * 1024;

export async function packageVsix(out?: string): Promise<string> {
  await ensureIcon();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  const vsix = out ?? join(ROOT, `${pkg.name}-${pkg.version}.vsix`);
  const vsce = join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
  // Everything the extension needs is in dist/extension.js: no dependencies to ship.
  const files = execFileSync(process.execPath, [vsce, 'ls', '--no-dependencies'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
  const forbidden = files.filter((f) => /^(src|test|scripts|node_modules)\//.test(f) || f.endsWith('.ts') || f.endsWith('.map'));
  if (forbidden.length > 0) throw new Error(`The package would contain ${forbidden.join(', ')}: fix .vscodeignore.`);
  execFileSync(process.execPath, [vsce, 'package', '--no-dependencies', '--allow-missing-repository', '--no-rewrite-relative-links', '--out', vsix], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  const size = statSync(vsix).size;
  if (size > MAX_BYTES) throw new Error(`${vsix} is ${size} bytes, over the 1 MiB budget.`);
  console.log(`${vsix}: ${(size / 1024).toFixed(0)} KiB, ${files.length} files: ${files.join(', ')}`);
  return vsix;
}

/** Installs the .vsix into a fresh code-server and checks the extension activates (its view shows its welcome). */
async function verifyInstall(vsix: string): Promise<void> {
  const workspace = mkdtempSync(join(tmpdir(), 'vmsnap-vsix-workspace-'));
  const library = mkdtempSync(join(tmpdir(), 'vmsnap-vsix-library-'));
  const server = await startCodeServer({ workspace, install: [vsix], settings: { 'vmsnap.libraryFolder': library } });
  const browser = await openChromium();
  try {
    await browser.page.goto(server.url(workspace));
    const icon = browser.page.getByRole('tab', { name: /VM Snapshots/ });
    await icon.waitFor({ timeout: 60_000 });
    await icon.click();
    // The welcome view's button appears only once the activated extension reported an empty library.
    await browser.page.getByRole('button', { name: 'Create a Machine' }).waitFor({ timeout: 60_000 });
    await browser.page.screenshot({ path: join(ROOT, 'test-artifacts', 'installed-vsix.png') });
    console.log(`Installed ${vsix} into code-server with --install-extension: it activates (the Machines view answers).`);
  } finally {
    await browser.close();
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
    rmSync(library, { recursive: true, force: true });
  }
}

if (require.main === module) {
  packageVsix()
    .then(async (vsix) => {
      if (!process.argv.includes('--no-verify')) await verifyInstall(vsix);
    })
    .then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(e instanceof Error ? e.message : String(e));
        process.exit(1);
      },
    );
}
