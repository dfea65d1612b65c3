// Bundles each entry point into one CommonJS file in dist/. Type-checking is its own step (npm run typecheck).
// `node scripts/build.mjs cli` bundles only the CLI (the CLI tests do this).
import { build } from 'esbuild';
import { readdirSync, rmSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

// The CLI starts in a few milliseconds: Node's heavier built-in modules are loaded when first used, not when
// the bundle loads (`vmsnap --help` never needs sockets, zlib or child processes). The bundle gets a stand-in
// for each: an object with the module's export names (known now) as getters that require the real module.
const require = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: /^node:(child_process|https?|net|zlib)$/ }, (args) =>
      args.namespace === 'lazy-builtin' ? { path: args.path, external: true } : { path: args.path, namespace: 'lazy-builtin' },
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      contents: `let real;
for (const key of ${JSON.stringify(Object.keys(require(args.path)))}) {
  Object.defineProperty(module.exports, key, { enumerable: true, get: () => (real ??= require(${JSON.stringify(args.path)}))[key] });
}`,
      loader: 'js',
    }));
  },
};

const entries = {
  cli: 'src/cli/main.ts',
  bench: 'test/bench/main.ts',
  // The VS Code extension (vscode stays external: the extension host provides it).
  extension: 'src/extension/extension.ts',
};

// The extension-host test suite: its runner plus one bundle per test file (mocha, like vscode, comes from outside).
const extensionTests = ['test/extension/index.ts', ...readdirSync('test/extension').filter((f) => f.endsWith('.vscode.ts')).map((f) => `test/extension/${f}`)];

const only = process.argv[2];

await Promise.all(
  Object.entries(entries).filter(([name]) => only === undefined || name === only).map(([name, entry]) =>
    build({
      entryPoints: [entry],
      outfile: `dist/${name}.js`,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      sourcemap: true,
      external: ['vscode'],
      plugins: name === 'cli' ? [lazyBuiltins] : [],
      logLevel: 'warning',
    }),
  ),
);

/**
 * noVNC's util/browser.js awaits a codec probe at its top level, which an IIFE bundle cannot hold: the probe's answer
 * is set when it comes instead (it only decides H.264, which QEMU's VNC server never sends).
 */
const novncTopLevelAwait = {
  name: 'novnc-top-level-await',
  setup(b) {
    b.onLoad({ filter: /@novnc[\\/]novnc[\\/]core[\\/]util[\\/]browser\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const awaited = /^supportsWebCodecsH264Decode = await _checkWebCodecsH264DecodeSupport\(\);$/m;
      if (!awaited.test(source)) throw new Error(`${args.path}: the top-level await this build rewrites is not there any more; check the new noVNC version.`);
      return { contents: source.replace(awaited, 'void _checkWebCodecsH264DecodeSupport().then((v) => { supportsWebCodecsH264Decode = v; });'), loader: 'js' };
    });
  },
};

/** A page that runs in a webview: a browser bundle of its own in dist/webview/NAME.js. */
function webview(name, entry, plugins = []) {
  return build({
    entryPoints: [entry],
    outfile: `dist/webview/${name}.js`,
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    minify: true,
    sourcemap: false,
    plugins,
    logLevel: 'warning',
  });
}

if (only === undefined) {
  // The suite runs every bundle in the folder: one left from a test file since removed must not run again.
  rmSync('dist/test/extension', { recursive: true, force: true });
  await Promise.all([
    // A machine's screen: noVNC's RFB client, bundled (no CDN), on the relay channel.
    webview('display', 'src/extension/display/webview/main.ts', [novncTopLevelAwait]),
    // The comparison table.
    webview('compare', 'src/extension/compare/webview/main.ts'),
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

  // noVNC is MPL-2.0: its licence travels with the bundle that contains it.
  await copyFile('node_modules/@novnc/novnc/LICENSE.txt', 'dist/webview/novnc-LICENSE.txt');
}
