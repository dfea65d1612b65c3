// Bundles each entry point into one CommonJS file in dist/. Type-checking is its own step (npm run typecheck).
import { build } from 'esbuild';

const entries = {
  cli: 'src/cli/main.ts',
  bench: 'test/bench/main.ts',
};

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
