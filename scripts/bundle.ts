/**
 * Builds dist/: src/cli.ts and everything it imports as ES modules bundled by esbuild, one file per
 * lazily imported command (code splitting keeps the lazy imports lazy), with source maps. Type checking
 * is tsc's job (`npm run build` runs it first).
 *
 * Why a bundle: Node.js resolves and reads every module file of the dependency tree on each start
 * (zod and execa alone are hundreds of files). Bundled, a command that runs `failover` starts in about a
 * third of the time, which is felt in failover's RTO, in the pre-start guard hook and in every command an
 * operator types. docs/benchmarks.md has the figures.
 *
 * etcd3 stays in node_modules: it reads its .proto files from its own folder at run time, and it is
 * loaded only when etcd is configured. So does cockatiel, loaded with it: etcd3 uses the same module
 * instance for its own policies, and esbuild's rewrite of cockatiel's nested CommonJS re-exports
 * (`__exportStar`) lost names (`ConstantBackoff` came through undefined).
 *
 *   npx tsx scripts/bundle.ts
 */
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const REPO = resolve(import.meta.dirname, '..');
const OUT = join(REPO, 'dist');

await rm(OUT, { recursive: true, force: true });
const result = await build({
  entryPoints: [join(REPO, 'src', 'cli.ts')],
  outdir: OUT,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  // The dependencies written as CommonJS call require() for Node's own modules: give them one.
  banner: {
    js: "import { createRequire as __chefHaCreateRequire } from 'node:module'; const require = __chefHaCreateRequire(import.meta.url);",
  },
  external: ['etcd3', 'cockatiel'],
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
process.stdout.write(
  `bundle: ${Object.keys(result.metafile.outputs).length} files, ${(bytes / 1024 / 1024).toFixed(1)} MB in dist/\n`,
);
