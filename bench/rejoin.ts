/**
 * Benchmark: `chef-ha-ctl rejoin` of the old master after a failover.
 *
 *   npx tsx bench/rejoin.ts [--runs 5] [--writes 200]
 *
 * One two-node sandbox (asynchronous streaming): setup-master on chef-a, setup-slave --bundle on chef-b.
 * Each run: `--writes` node PUTs on the primary (so that there is WAL to rewind over), kill -9 of the
 * primary's postmaster, `chef-ha-ctl failover` on the standby, a few writes on the new primary, then
 * `chef-ha-ctl rejoin` on the old master, timed from spawn to exit (it ends when the new primary reports
 * the old master streaming). The roles alternate, so every run is a failover and a rejoin back and forth.
 * Prints each run, the steps that dominate, and the medians (target: median ≤ 3 s). Needs root and a
 * built CLI (`npm run build`).
 */
import { parseArgs } from 'node:util';
import {
  bundlePath,
  firstStepAtMs,
  loadLine,
  machineLine,
  median,
  mustCli,
  pair,
  postmasterPid,
  putNode,
  runCli,
  stepTimings,
  waitFor,
  waitForQuiet,
  withSandbox,
  type CliRun,
  type SandboxNode,
} from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    writes: { type: 'string', default: '200' },
  },
});
const runs = Number(values.runs);
const writes = Number(values.writes);
if (!Number.isInteger(runs) || runs < 1 || runs > 100 || !Number.isInteger(writes) || writes < 0) {
  console.error(
    'usage: npx tsx bench/rejoin.ts [--runs N] [--writes W]   (N ≥ 1, default 5; W ≥ 0, default 200)',
  );
  process.exit(2);
}

const accepted = (status: number): boolean => status === 200 || status === 201;
const fmt = (ms: number | undefined): string => (ms === undefined ? '-' : (ms / 1000).toFixed(2));

interface RunResult {
  readonly run: CliRun;
  readonly method: string;
  readonly discarded: string;
  readonly busyBefore: number;
}

async function crash(node: SandboxNode): Promise<void> {
  const pm = await postmasterPid(node.postgres.dataDir);
  if (pm === undefined) {
    throw new Error(`${node.name}'s postmaster is not running`);
  }
  process.kill(pm, 'SIGKILL');
  await waitFor(
    `${node.name}'s postmaster to die`,
    async () => (await postmasterPid(node.postgres.dataDir)) === undefined,
    10_000,
  );
}

async function oneRun(i: number, primary: SandboxNode, standby: SandboxNode): Promise<RunResult> {
  for (let w = 0; w < writes; w += 1) {
    if (!accepted(await putNode(primary.chefApi, `bench-rejoin-${i}-${w}`))) {
      throw new Error(`${primary.name} refused a write`);
    }
  }
  await crash(primary);
  await mustCli(standby, ['failover']);
  for (let w = 0; w < 10; w += 1) {
    if (!accepted(await putNode(standby.chefApi, `bench-rejoin-${i}-after-${w}`))) {
      throw new Error(`${standby.name} refused a write after the failover`);
    }
  }
  const busyBefore = await waitForQuiet(`run ${i}`);
  const run = await runCli(primary, ['--json', 'rejoin']);
  if (run.code !== 0) {
    throw new Error(`rejoin on ${primary.name} exited ${run.code}:\n${run.stderr}`);
  }
  const out = JSON.parse(run.stdout) as {
    method: string;
    divergence: { discardedBytes: number | null; records: number | null } | null;
  };
  const d = out.divergence;
  return {
    run,
    method: out.method,
    discarded:
      d?.discardedBytes === null || d?.discardedBytes === undefined
        ? '-'
        : `${(d.discardedBytes / 1024).toFixed(0)} KiB/${d.records ?? '?'}`,
    busyBefore,
  };
}

async function main(): Promise<void> {
  console.log(`rejoin benchmark: ${await machineLine()}`);
  console.log(
    `${runs} run(s); ${writes} writes on the primary before each kill -9; times in seconds from the start of the rejoin process; ${loadLine()}\n`,
  );
  const cols = [
    'run',
    'old master',
    'method',
    'discarded',
    'plan@',
    'checkpoint',
    'save-wal',
    'rewind',
    'start',
    'wait-str',
    'total',
  ];
  await withSandbox('chef-ha-bench-rejoin-', {}, async (sb) => {
    const [a, b] = pair(sb);
    await mustCli(a, ['setup-master']);
    await mustCli(b, ['setup-slave', '--bundle', await bundlePath(a)]);
    console.log(cols.map((c) => c.padStart(11)).join(''));
    const results: RunResult[] = [];
    let [primary, standby] = [a, b];
    for (let i = 1; i <= runs; i += 1) {
      const r = await oneRun(i, primary, standby);
      results.push(r);
      const steps = stepTimings(r.run);
      const ms = (id: string): number | undefined => steps.find((s) => s.id === id)?.ms;
      console.log(
        [
          String(i),
          primary.name,
          r.method,
          r.discarded,
          fmt(firstStepAtMs(r.run)),
          fmt(ms('checkpoint-new-primary')),
          fmt(ms('save-diverged-wal')),
          fmt(ms('rewind')),
          fmt(ms('start-postgresql')),
          fmt(ms('wait-streaming')),
          fmt(r.run.totalMs),
        ]
          .map((c) => c.padStart(11))
          .join('') + `   (machine ${(r.busyBefore * 100).toFixed(0)}% busy before)`,
      );
      [primary, standby] = [standby, primary];
    }
    const med = (f: (r: RunResult) => number | undefined): string => {
      const xs = results.map(f).filter((x): x is number => x !== undefined);
      return xs.length === 0 ? '-' : fmt(median(xs));
    };
    const stepMed = (id: string): string => med((r) => stepTimings(r.run).find((s) => s.id === id)?.ms);
    console.log(
      [
        'median',
        '',
        '',
        '',
        med((r) => firstStepAtMs(r.run)),
        stepMed('checkpoint-new-primary'),
        stepMed('save-diverged-wal'),
        stepMed('rewind'),
        stepMed('start-postgresql'),
        stepMed('wait-streaming'),
        med((r) => r.run.totalMs),
      ]
        .map((c) => c.padStart(11))
        .join(''),
    );
    const m = median(results.map((r) => r.run.totalMs));
    console.log(`
discarded   WAL of the old timeline after the split (KiB / records), as rejoin reported it
plan@       when the first step started (node start, config, facts, decision came before)
checkpoint, save-wal, rewind, start, wait-str: step durations printed by chef-ha-ctl
total       rejoin process, spawn to exit (the new primary reports the old master streaming)

median rejoin: ${fmt(m)} s (target ≤ 3.00 s): ${m <= 3000 ? 'target met' : 'target MISSED'}`);
  });
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
