// `npm start`: the extension in code-server on 127.0.0.1 with a demo library, and the URL to open.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startCodeServer } from './code-server';
import { CACHE } from './host';
import { ensureDemoLibrary } from './demo-library';
import { packageVsix } from './package';

async function main(): Promise<void> {
  const library = await ensureDemoLibrary();
  const vsix = await packageVsix(join(CACHE, 'vmsnap-start.vsix'));
  const profileDir = join(CACHE, 'start-profile');
  const workspace = join(CACHE, 'start-workspace');
  mkdirSync(workspace, { recursive: true });
  const port = Number(process.env['PORT'] ?? 0) || undefined;
  const server = await startCodeServer({
    workspace,
    profileDir,
    install: [vsix],
    ...(port ? { port } : {}),
    settings: { 'vmsnap.libraryFolder': library, 'vmsnap.devMachine': 'dev-vm', 'workbench.colorTheme': 'Default Dark Modern' },
  });
  console.log('');
  console.log(`VM Snapshots is running in VS Code (code-server) with the demo library ${library}.`);
  console.log(`Open ${server.url(workspace)}`);
  console.log('Press Ctrl+C to stop.');
  const stop = (): void => {
    void server.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
