// The extension-host suite's entry: VS Code (code-server's smoke-test driver, or @vscode/test-electron) loads
// this module inside the extension host and awaits run(). Mocha comes from the project's node_modules.
import Mocha from 'mocha';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { TestHandle } from '../../src/extension/test-handle';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: 60_000, reporter: 'spec' });
  const grep = process.env['VMSNAP_TEST_GREP'];
  if (grep) mocha.grep(grep);
  for (const f of readdirSync(__dirname).filter((f) => f.endsWith('.vscode.js')).sort()) mocha.addFile(join(__dirname, f));
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const runner = mocha.run((failures) => {
      const passed = runner.stats?.passes ?? 0;
      // The harness reads this line for its counts (scripts/vscode/extension-host.ts).
      console.log(`vmsnap-suite-result ${JSON.stringify({ passed, failed: failures, ms: Date.now() - started })}`);
      if (failures > 0) reject(new Error(`${failures} test(s) failed.`));
      else resolve();
    });
    // A command that fails shows its error and returns nothing: say which error, as a test sees only the nothing.
    runner.on('fail', () => {
      const shown = vscode.extensions.getExtension<TestHandle>('vmsnap.vmsnap')?.exports?.lastError;
      if (shown) console.log(`      the last error a command showed: ${shown.message}${shown.code ? ` (${shown.code})` : ''}`);
    });
  });
}
