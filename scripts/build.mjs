// Bundles each entry point into one CommonJS file in dist/. Type-checking is its own step (npm run typecheck).
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';

const entries = {
  cli: 'src/cli/main.ts',
  bench: 'test/bench/main.ts',
  // The VS Code extension (vscode stays external: the extension host provides it).
  extension: 'src/extension/extension.ts',
};

// The extension-host test suite: its runner plus one bundle per test file (mocha, like vscode, comes from outside).
const extensionTests = ['test/extension/index.ts', ...readdirSync('test/extension').filter((f) => f.endsWith('.vscode.ts')).map((f) => `test/extension/${f}`)];

await Promise.all(
  Object.entries(entries).map(([name, entry]) =>
    build({
      entryPoints: [entry],
      outfile: `dist/${name}.js`,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      sourcemap: true,
      external: ['vscode'],
      logLevel: 'warning',
    }),
  ),
);

await Promise.all([
  // The comparison table's page runs in the webview: a browser bundle of its own.
  build({
    entryPoints: ['src/extension/compare/webview/main.ts'],
    outfile: 'dist/webview/compare.js',
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    minify: true,
    sourcemap: false,
    logLevel: 'warning',
  }),
  build({
    entryPoints: extensionTests,
    outdir: 'dist/test/extension',
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    sourcemap: 'inline',
    external: ['vscode', 'mocha'],
    logLevel: 'warning',
  }),
]);
