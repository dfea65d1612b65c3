// `npm run test:vscode`: the extension-host suite inside code-server, then the UI tests (playwright-core) against
// it. Exits non-zero on any failure; the closing line is "N passed, N failed".
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCodeServer } from './code-server';
import { runExtensionSuite } from './extension-host';
import { ROOT } from './host';
import { scratchWorkspace } from './workspace';

const SUITE_TIMEOUT_MS = 10 * 60_000;
const UI_TIMEOUT_MS = 10 * 60_000;
export const ARTIFACTS = join(ROOT, 'test-artifacts');

interface PhaseResult {
  phase: string;
  passed: number;
  failed: number;
  seconds: number;
}

async function extensionHostPhase(): Promise<PhaseResult> {
  const started = Date.now();
  const workspace = scratchWorkspace();
  const library = mkdtempSync(join(tmpdir(), 'vmsnap-default-library-'));
  const server = await startCodeServer({ workspace, testDriver: true, env: { VMSNAP_LIBRARY: library } });
  try {
    const run = await runExtensionSuite(server, {
      extensionPath: ROOT,
      suitePath: join(ROOT, 'dist', 'test', 'extension', 'index.js'),
      workspace,
      timeoutMs: SUITE_TIMEOUT_MS,
      print: (line) => console.log(line),
    });
    writeFileSync(join(ARTIFACTS, 'extension-host.log'), run.log);
    if (run.exitCode !== 0 && run.passed + run.failed <= 1) {
      // It never ran: show what the server said.
      console.log(server.output().split('\n').slice(-40).join('\n'));
    }
    return { phase: 'extension host', passed: run.passed, failed: run.failed, seconds: (Date.now() - started) / 1000 };
  } finally {
    await server.stop();
    rmSync(workspace, { recursive: true, force: true });
    rmSync(library, { recursive: true, force: true });
  }
}

/** The UI tests start their own code-server (a clean workbench) through the same harness. */
function uiPhase(): Promise<PhaseResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const mocha = join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const child = spawn(
      process.execPath,
      [mocha, '--no-config', '--require', 'tsx/cjs', '--extension', 'ts', '--timeout', '180000', '--reporter', join(ROOT, 'test', 'support', 'reporter.cjs'), 'test/ui/**/*.ui.ts'],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      process.stdout.write(b);
    });
    const timer = setTimeout(() => {
      console.log(`The UI tests did not finish within ${UI_TIMEOUT_MS / 60_000} minutes.`);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, UI_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const m = [...out.matchAll(/^(\d+) passed, (\d+) failed$/gm)].pop();
      const passed = m ? Number(m[1]) : 0;
      let failed = m ? Number(m[2]) : 0;
      if (code !== 0 && failed === 0) failed = 1;
      resolve({ phase: 'ui', passed, failed, seconds: (Date.now() - started) / 1000 });
    });
  });
}

async function main(): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const only = process.argv[2];
  const results: PhaseResult[] = [];
  if (only !== 'ui') results.push(await extensionHostPhase());
  if (only !== 'extension-host') results.push(await uiPhase());
  console.log('');
  for (const r of results) console.log(`${r.phase}: ${r.passed} passed, ${r.failed} failed (${r.seconds.toFixed(1)} s)`);
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  writeFileSync(join(ARTIFACTS, 'vscode-summary.json'), `${JSON.stringify({ passed, failed, phases: results }, null, 2)}\n`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 || passed === 0 ? 1 : 0);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  console.log('0 passed, 1 failed');
  process.exit(1);
});
