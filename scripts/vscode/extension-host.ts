// Runs a compiled mocha suite inside code-server's extension host: the workbench's smoke-test driver loads the
// extension under development and the suite, forwards the extension host's console to codeAutomationLog and
// reports the suite's exit code through codeAutomationExit.
import { format } from 'node:util';
import { openChromium } from './browser';
import type { CodeServer } from './code-server';

export interface SuiteRun {
  exitCode: number;
  passed: number;
  failed: number;
  durationMs: number;
  log: string;
}

/** The suite's index prints this line when it ends (see test/extension/index.ts). */
export const SUITE_RESULT = /^vmsnap-suite-result (\{.*\})$/m;

const verbose = process.env['VMSNAP_VERBOSE'] === '1';

/** The workbench's own chatter offline (the full log is kept in test-artifacts/extension-host.log). */
const NOISE = [
  /ENOTFOUND/,
  /authentication provider/,
  /^\[(AccountPolicyGate|AgentHost|Service Worker)/,
  /^Creating a socket/,
  /^Creation of workbench contribution/,
  /^Updating additional builtin extensions cache/,
  /onWillSaveTextDocument/,
  /telemetry/i,
];

function isNoise(text: string): boolean {
  const first = text.split('\n', 1)[0] ?? '';
  return NOISE.some((re) => re.test(first));
}

export async function runExtensionSuite(
  server: CodeServer,
  options: { extensionPath: string; suitePath: string; workspace: string; timeoutMs: number; print?: (line: string) => void },
): Promise<SuiteRun> {
  const started = Date.now();
  const print = options.print ?? ((l: string) => console.log(l));
  const browser = await openChromium();
  let log = '';
  try {
    let exit: (code: number) => void = () => {};
    const exited = new Promise<number>((r) => (exit = r));
    await browser.page.exposeFunction('codeAutomationLog', (_level: unknown, args: unknown) => {
      // The extension host's console.log arguments, format string first (mocha's reporter uses %s and %d).
      const text = (Array.isArray(args) ? format(...(args as unknown[])) : String(args)).replace(/\n$/, '');
      log += `${text}\n`;
      if (!SUITE_RESULT.test(text) && (verbose || !isNoise(text))) print(text);
    });
    await browser.page.exposeFunction('codeAutomationExit', (code: unknown) => exit(typeof code === 'number' ? code : 1));
    const payload: [string, string][] = [
      ['extensionDevelopmentPath', server.remote(options.extensionPath)],
      ['extensionTestsPath', server.remote(options.suitePath)],
      ['skipWelcome', 'true'],
    ];
    await browser.page.goto(server.url(options.workspace, payload));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<number>((r) => (timer = setTimeout(() => r(-1), options.timeoutMs)));
    const exitCode = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (exitCode === -1) print(`The extension-host suite did not finish within ${Math.round(options.timeoutMs / 1000)} s.`);
    const m = SUITE_RESULT.exec(log);
    const counts = m ? (JSON.parse(m[1]!) as { passed: number; failed: number }) : { passed: 0, failed: 0 };
    // A suite that never reported (did not load, hung) counts as one failure.
    const failed = exitCode !== 0 && counts.failed === 0 ? 1 : counts.failed;
    return { exitCode, passed: counts.passed, failed, durationMs: Date.now() - started, log };
  } finally {
    await browser.close();
  }
}
