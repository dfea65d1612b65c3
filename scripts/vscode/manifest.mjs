// Writes the extension's keys into package.json (contributes, activationEvents, main, icon, galleryBanner and the
// extension's npm scripts), leaving every other key as it is: read, change and write in one go.
import { readFileSync, writeFileSync } from 'node:fs';
import { URL } from 'node:url';
import { activationEvents, contributes } from './contributes.mjs';

const file = new URL('../../package.json', import.meta.url);
const pkg = JSON.parse(readFileSync(file, 'utf8'));
pkg.main = './dist/extension.js';
pkg.icon = 'media/icon.png';
pkg.galleryBanner = { color: '#17324d', theme: 'dark' };
pkg.activationEvents = activationEvents;
// On the host side of a Remote-SSH window first (the library and QEMU are there), in the remote one only when
// VS Code cannot run it locally (a web client).
pkg.extensionKind = ['ui', 'workspace'];
pkg.contributes = contributes;
pkg.scripts = {
  ...pkg.scripts,
  start: 'bash scripts/setup.sh && node scripts/build.mjs && tsx scripts/vscode/start.ts',
  'test:vscode': 'node scripts/build.mjs && tsx scripts/vscode/test.ts',
  'test:desktop': 'node scripts/build.mjs && tsx scripts/vscode/desktop.ts',
  package: 'node scripts/build.mjs && tsx scripts/vscode/package.ts',
};
const text = `${JSON.stringify(pkg, null, 2)}\n`;
if (text !== readFileSync(file, 'utf8')) {
  writeFileSync(file, text);
  console.log('package.json: extension keys updated');
}
