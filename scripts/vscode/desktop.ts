// `npm run test:desktop`: the same extension-host suite in desktop VS Code through @vscode/test-electron, which
// downloads VS Code on first use (needs the network; offline, use `npm run test:vscode`).
import { runTests } from '@vscode/test-electron';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './host';
import { scratchWorkspace } from './workspace';

async function main(): Promise<void> {
  const workspace = scratchWorkspace();
  const library = mkdtempSync(join(tmpdir(), 'vmsnap-default-library-'));
  try {
    await runTests({
      extensionDevelopmentPath: ROOT,
      extensionTestsPath: join(ROOT, 'dist', 'test', 'extension', 'index.js'),
      launchArgs: [workspace, '--disable-workspace-trust', '--skip-welcome', '--skip-release-notes'],
      extensionTestsEnv: { VMSNAP_LIBRARY: library },
    });
  } finally {
    rmSync(workspace, { recursive: true, force: true });
    rmSync(library, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
