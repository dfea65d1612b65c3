// `npm start`: the extension in code-server on 127.0.0.1 with a demo library, and the URL to open. The workbench
// is plain VS Code: no test driver, so notifications pop up as they do for users.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startCodeServer, type CodeServer } from './code-server';
import { CACHE } from './host';
import { ensureDemoLibrary } from './demo-library';
import { packageVsix } from './package';

export interface Demo {
  server: CodeServer;
  library: string;
  workspace: string;
  /** The URL to open in a browser. */
  url: string;
}

/** The demo as `npm start` runs it; a UI test gives its own scratch profile so it never shares the user's. */
export async function startDemo(options: { profileDir?: string; port?: number } = {}): Promise<Demo> {
  const library = await ensureDemoLibrary();
  const vsix = await packageVsix(join(CACHE, 'vmsnap-start.vsix'));
  const profileDir = options.profileDir ?? join(CACHE, 'start-profile');
  const workspace = join(CACHE, 'start-workspace');
  mkdirSync(workspace, { recursive: true });
  const server = await startCodeServer({
    workspace,
    profileDir,
    install: [vsix],
    ...(options.port ? { port: options.port } : {}),
    settings: { 'vmsnap.libraryFolder': library, 'vmsnap.devMachine': 'dev-vm', 'workbench.colorTheme': 'Default Dark Modern' },
  });
  return { server, library, workspace, url: server.url(workspace) };
}

async function main(): Promise<void> {
  const port = Number(process.env['PORT'] ?? 0) || undefined;
  const demo = await startDemo(port ? { port } : {});
  console.log('');
  console.log(`VM Snapshots is running in VS Code (code-server) with the demo library ${demo.library}.`);
  console.log(`Open ${demo.url}`);
  console.log('Press Ctrl+C to stop.');
  const stop = (): void => {
    void demo.server.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}
