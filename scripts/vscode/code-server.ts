// Starts code-server on loopback with a scratch profile, and stops it (with every process it started) by its id.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureHost } from './host';

export interface CodeServerOptions {
  /** The folder the workbench opens. */
  workspace: string;
  /** Extra user settings (merged over the quiet defaults). */
  settings?: Record<string, unknown>;
  /** Environment for the server and so for the extension host (e.g. VMSNAP_LIBRARY). */
  env?: Record<string, string>;
  /** Keep the profile between runs (npm start); default: a scratch folder removed by stop(). */
  profileDir?: string;
  /** A port to listen on; default: a free one. */
  port?: number;
  /** .vsix files to install into the profile before starting. */
  install?: string[];
  /** Where code-server's output goes; default: collected, printed only when it fails to start. */
  log?: (line: string) => void;
  /**
   * Load a test payload (extensionDevelopmentPath, extensionTestsPath) through VS Code's smoke-test driver: tests
   * only, since with the driver on the workbench shows no notification toasts (they only light the bell).
   */
  testDriver?: boolean;
}

export interface CodeServer {
  port: number;
  origin: string;
  profileDir: string;
  pid: number;
  /** The workbench URL for a folder, optionally with a smoke-test payload. */
  url(folder: string, payload?: [string, string][]): string;
  /** `vscode-remote://` URI of a path on this machine, for payload entries. */
  remote(path: string): string;
  output(): string;
  stop(): Promise<void>;
}

/** code-server's quiet defaults: no welcome page, no AI, no update checks, no telemetry. */
const QUIET_SETTINGS = {
  'workbench.startupEditor': 'none',
  'chat.disableAIFeatures': true,
  'update.mode': 'none',
  'telemetry.telemetryLevel': 'off',
  'workbench.tips.enabled': false,
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'git.openRepositoryInParentFolders': 'never',
  'security.workspace.trust.enabled': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'workbench.layoutControl.enabled': false,
};

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => done(port));
    });
  });
}

export async function startCodeServer(options: CodeServerOptions): Promise<CodeServer> {
  const host = await ensureHost();
  const scratch = options.profileDir === undefined;
  const profileDir = options.profileDir ?? mkdtempSync(join(tmpdir(), 'vmsnap-code-server-'));
  const userDir = join(profileDir, 'user');
  const extDir = join(profileDir, 'extensions');
  await mkdir(join(userDir, 'User'), { recursive: true });
  await mkdir(extDir, { recursive: true });
  const settings = JSON.stringify({ ...QUIET_SETTINGS, ...options.settings }, null, 2);
  await writeFile(join(userDir, 'User', 'settings.json'), settings);
  // Machine-scoped settings (vmsnap.libraryFolder) of a remote extension host are read from the server's
  // "Machine" settings, not the browser-side user settings.
  await mkdir(join(userDir, 'Machine'), { recursive: true });
  await writeFile(join(userDir, 'Machine', 'settings.json'), settings);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Otherwise code-server writes its config and state into ~.
    XDG_CONFIG_HOME: join(profileDir, 'xdg', 'config'),
    XDG_DATA_HOME: join(profileDir, 'xdg', 'data'),
    XDG_CACHE_HOME: join(profileDir, 'xdg', 'cache'),
    ...options.env,
  };
  // The project's npm scripts put Node 20 first on PATH; VS Code's server must not pick it up for its helpers.
  delete env['npm_config_nodedir'];
  const base = [`--user-data-dir`, userDir, `--extensions-dir`, extDir];
  for (const vsix of options.install ?? []) {
    await runToEnd(host.node, [host.codeServer, ...base, '--install-extension', vsix, '--force'], env);
  }
  const port = options.port ?? (await freePort());
  const args = [
    host.codeServer,
    '--bind-addr',
    `127.0.0.1:${port}`,
    '--auth',
    'none',
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--reconnection-grace-time',
    '10',
    ...base,
    // Without it the workbench silently ignores the test payload; with it, it hides notification toasts.
    ...(options.testDriver === true ? ['--vscode-option', 'enable-smoke-test-driver'] : []),
    '--vscode-option',
    'skip-welcome',
    '--vscode-option',
    'skip-release-notes',
    options.workspace,
  ];
  let output = '';
  const child: ChildProcess = spawn(host.node, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const onData = (b: Buffer): void => {
    const text = b.toString();
    output += text;
    if (options.log) for (const line of text.split('\n')) if (line.trim()) options.log(line);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const pid = child.pid;
  if (pid === undefined) throw new Error('code-server did not start.');
  let exited = false;
  child.once('exit', () => (exited = true));
  const origin = `http://127.0.0.1:${port}`;

  const stop = async (): Promise<void> => {
    // code-server was started as the leader of its own process group: this ends it and the extension host,
    // file watcher and terminals it started, and nothing else.
    if (!exited) {
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const deadline = Date.now() + 5000;
      while (!exited && Date.now() < deadline) await sleep(100);
      if (!exited) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (scratch) await rm(profileDir, { recursive: true, force: true }).catch(() => {});
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`code-server exited before it answered:\n${output}`);
    try {
      const r = await fetch(`${origin}/healthz`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`code-server did not answer ${origin}/healthz within 60 s:\n${output}`);
    }
    await sleep(250);
  }

  return {
    port,
    origin,
    profileDir,
    pid,
    url(folder, payload) {
      const q = new URLSearchParams({ folder });
      if (payload) q.set('payload', JSON.stringify(payload));
      return `${origin}/?${q.toString()}`;
    },
    remote(path) {
      return `vscode-remote://127.0.0.1:${port}${path}`;
    },
    output: () => output,
    stop,
  };
}

function runToEnd(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`${args.slice(1).join(' ')} failed (exit ${code}):\n${out}`))));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
