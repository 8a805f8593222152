/**
 * Benchmark: the packages' sizes, and the cold start of `chef-ha-ctl --version` with the embedded
 * Node.js (target ≤ 250 ms), against the work tree's `node dist/cli.js --version`.
 *
 *   npx tsx bench/package.ts [--dir packages] [--runs 20]
 *
 * Uses the .tar.gz that scripts/build-package wrote to --dir (build it first), unpacked and installed
 * with its install.sh into a temporary root; each run starts a fresh process with an empty PATH.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { loadLine, machineLine, median, waitForQuiet } from './lib.js';

const execFileP = promisify(execFile);
const REPO = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: join(REPO, 'packages') },
    runs: { type: 'string', default: '20' },
  },
});
const runs = Number(values.runs);

function timeOnce(argv: readonly string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0] ?? '', argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.status ?? '?'}: ${String(r.stderr)}`);
  }
  return ms;
}

function p95(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)] ?? Number.NaN;
}

async function main(): Promise<void> {
  console.log(`package benchmark: ${await machineLine()}`);
  const version = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string })
    .version;
  const dir = resolve(values.dir);
  const names = (await readdir(dir)).filter((n) => n.includes(version)).sort();
  if (names.length === 0) {
    throw new Error(`no packages of ${version} in ${dir}: run scripts/build-package first`);
  }
  for (const n of names) {
    console.log(
      `  ${n.padEnd(40)} ${((await stat(join(dir, n))).size / 1024 / 1024).toFixed(1)} MB (target ≤ 60 MB)`,
    );
  }
  const work = await mkdtemp(join(tmpdir(), 'chef-ha-bench-pkg-'));
  try {
    await execFileP('tar', ['-xzf', join(dir, `chef-ha-${version}-linux-x64.tar.gz`), '-C', work]);
    const root = join(work, 'root');
    await execFileP(join(work, `chef-ha-${version}`, 'install.sh'), ['--root', root]);
    const installed = Number(
      (await execFileP('du', ['-sk', join(root, 'opt', 'chef-ha')])).stdout.split('\t')[0],
    );
    console.log(`  installed /opt/chef-ha: ${(installed / 1024).toFixed(0)} MB`);
    const env = { PATH: join(work, 'no-bin'), NO_COLOR: '1' };
    const embedded = [join(root, 'opt', 'chef-ha', 'bin', 'chef-ha-ctl'), '--version'];
    const tree = [process.execPath, join(REPO, 'dist', 'cli.js'), '--version'];
    timeOnce(embedded, env);
    timeOnce(tree, process.env);
    const busy = await waitForQuiet('cold starts');
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < runs; i++) {
      a.push(timeOnce(embedded, env));
      b.push(timeOnce(tree, process.env));
    }
    const f = (xs: number[]): string => `median ${median(xs).toFixed(0)} ms, p95 ${p95(xs).toFixed(0)} ms`;
    console.log(`  cold start, ${runs} runs each (machine ${(busy * 100).toFixed(0)}% busy before):`);
    console.log(`    /opt/chef-ha/bin/chef-ha-ctl --version (embedded Node.js): ${f(a)} (target ≤ 250 ms)`);
    console.log(`    node dist/cli.js --version (work tree, system Node.js):     ${f(b)}`);
    console.log(`  ${loadLine()}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
