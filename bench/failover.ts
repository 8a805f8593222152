/**
 * Benchmark: `chef-ha-ctl failover` after kill -9 of the master, seen by a Chef API client.
 *
 *   npx tsx bench/failover.ts [--runs 5] [--pause-ms 0] [--verbose]
 *
 * Each run builds a fresh two-node sandbox, runs setup-master on chef-a and setup-slave --bundle on
 * chef-b, checks that a write on chef-a reaches chef-b, kills chef-a's postmaster with SIGKILL and waits
 * until it is gone. Then, in the same tick, it starts `chef-ha-ctl failover` on chef-b and a writer that
 * PUTs /nodes/<name> to chef-b's Chef API in a tight loop (no pause, except 5 ms after a refused
 * connection; --pause-ms P pauses P ms between writes, to compare with a lighter load). It measures,
 * from the failover process's start: the first write chef-b's Chef API accepts (HTTP 200/201), the
 * failover process's exit, and the steps' times printed on its stderr.
 * Prints each run and the medians (target: median ≤ 1.5 s to the first accepted write). Needs root and a
 * built CLI (`npm run build`).
 */
import { parseArgs } from 'node:util';
import {
  bundlePath,
  firstStepAtMs,
  killChild,
  loadLine,
  machineLine,
  median,
  mustCli,
  now,
  pair,
  postmasterPid,
  putNode,
  seconds,
  sleep,
  startCli,
  stepTimings,
  waitFor,
  waitForQuiet,
  withSandbox,
  type CliRun,
  type StepTiming,
} from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    verbose: { type: 'boolean', default: false },
    'pause-ms': { type: 'string', default: '0' },
  },
});
const pauseMs = Number(values['pause-ms']);
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 100 || !Number.isInteger(pauseMs) || pauseMs < 0) {
  console.error(
    'usage: npx tsx bench/failover.ts [--runs N] [--pause-ms P] [--verbose]   (N ≥ 1, default 5; P ≥ 0, default 0)',
  );
  process.exit(2);
}

interface Attempt {
  /** ms after the failover process was spawned */
  readonly startMs: number;
  readonly endMs: number;
  readonly status: number;
}

const accepted = (status: number): boolean => status === 200 || status === 201;

/** PUTs nodes to chefApi until stop() says so; times are relative to t0. */
async function writer(
  chefApi: string,
  t0: number,
  stop: (a: readonly Attempt[]) => boolean,
): Promise<Attempt[]> {
  const attempts: Attempt[] = [];
  let i = 0;
  while (!stop(attempts)) {
    const start = now();
    const status = await putNode(chefApi, `bench-failover-${++i}`, 2_000);
    attempts.push({ startMs: start - t0, endMs: now() - t0, status });
    if (pauseMs > 0 || status === 0) {
      await sleep(Math.max(pauseMs, 5));
    }
  }
  return attempts;
}

interface RunResult {
  readonly ok: boolean;
  readonly firstAcceptedMs: number | undefined;
  /** The first accepted write after which every later write was accepted. */
  readonly stableMs: number | undefined;
  readonly failuresAfterFirst: number;
  readonly totalMs: number;
  readonly steps: readonly StepTiming[];
  readonly attempts: number;
  readonly statuses: string;
  readonly run: CliRun;
  /** CPU busy fraction of the machine just before the kill. */
  readonly busyBefore?: number;
}

function analyse(run: CliRun, attempts: readonly Attempt[]): RunResult {
  const firstIdx = attempts.findIndex((a) => accepted(a.status));
  let lastFail = -1;
  attempts.forEach((a, i) => {
    if (!accepted(a.status)) {
      lastFail = i;
    }
  });
  const stable = attempts[lastFail + 1];
  const counts = new Map<number, number>();
  for (const a of attempts) {
    counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
  }
  return {
    ok: run.code === 0,
    firstAcceptedMs: firstIdx >= 0 ? attempts[firstIdx]!.endMs : undefined,
    stableMs: stable && accepted(stable.status) ? stable.endMs : undefined,
    failuresAfterFirst:
      firstIdx >= 0 ? attempts.slice(firstIdx).filter((a) => !accepted(a.status)).length : 0,
    totalMs: run.totalMs,
    steps: stepTimings(run),
    attempts: attempts.length,
    statuses: [...counts]
      .sort((x, y) => x[0] - y[0])
      .map(([s, n]) => `${s === 0 ? 'no answer' : s}×${n}`)
      .join(' '),
    run,
  };
}

async function oneRun(index: number): Promise<RunResult> {
  return withSandbox(`chef-ha-bench-failover-${index}-`, {}, async (sb) => {
    const [a, b] = pair(sb);
    await mustCli(a, ['setup-master']);
    await mustCli(b, ['setup-slave', '--bundle', await bundlePath(a)]);
    if (!accepted(await putNode(a.chefApi, 'before-failover'))) {
      throw new Error('chef-a did not accept a write before the failover');
    }
    await waitFor(
      'the write to reach chef-b',
      async () => {
        const res = await fetch(`${b.chefApi}/nodes/before-failover`).catch(() => undefined);
        await res?.arrayBuffer();
        return res?.status === 200;
      },
      10_000,
    );
    const busyBefore = await waitForQuiet(`run ${index}`);
    const pm = await postmasterPid(a.postgres.dataDir);
    if (pm === undefined) {
      throw new Error("chef-a's postmaster is not running");
    }
    process.kill(pm, 'SIGKILL');
    await waitFor(
      "chef-a's postmaster to die",
      async () => (await postmasterPid(a.postgres.dataDir)) === undefined,
      10_000,
    );

    const fo = startCli(b, values.verbose ? ['--verbose', 'failover'] : ['failover']);
    let exitedAt: number | undefined;
    const stop = (attempts: readonly Attempt[]): boolean => {
      if (!fo.exited()) {
        return now() - fo.t0 > 120_000;
      }
      exitedAt ??= now();
      const last = attempts[attempts.length - 1];
      // Keep writing 1 s past the failover's exit, until a write is accepted (at most 30 s more).
      return (
        (now() - exitedAt >= 1_000 && last !== undefined && accepted(last.status)) ||
        now() - exitedAt > 30_000
      );
    };
    try {
      const [run, attempts] = await Promise.all([fo.done, writer(b.chefApi, fo.t0, stop)]);
      if (values.verbose || run.code !== 0) {
        for (const l of run.lines) {
          console.error(`    ${(l.atMs / 1000).toFixed(3)}  ${l.line}`);
        }
        const firstOk = attempts.find((x) => accepted(x.status));
        console.error(
          `    writer: ${attempts.length} attempts, first accepted ending at ${firstOk ? seconds(firstOk.endMs) : '-'}`,
        );
      }
      return { ...analyse(run, attempts), busyBefore };
    } finally {
      killChild(fo.child);
    }
  });
}

const fmt = (ms: number | undefined): string => (ms === undefined ? '-' : (ms / 1000).toFixed(2));
const stepOf = (r: RunResult, id: string): number | undefined => r.steps.find((s) => s.id === id)?.ms;
const doneAt = (r: RunResult, id: string): number | undefined => r.steps.find((s) => s.id === id)?.doneAtMs;

async function main(): Promise<void> {
  console.log(`failover benchmark: ${await machineLine()}`);
  console.log(
    `${runs} run(s); writer pause ${pauseMs} ms; times in seconds from the start of the failover process; ${loadLine()}\n`,
  );
  const cols = [
    'run',
    'plan@',
    'first-write',
    'stable',
    'fo-total',
    'fence',
    'promote',
    'wait-wr',
    'writable@',
    'restart',
    'restart@',
    'reindex',
    'fails-after',
  ];
  console.log(cols.map((c) => c.padStart(12)).join(''));
  const results: RunResult[] = [];
  for (let i = 1; i <= runs; i++) {
    const r = await oneRun(i);
    results.push(r);
    const row = [
      String(i),
      fmt(firstStepAtMs(r.run)),
      fmt(r.firstAcceptedMs),
      fmt(r.stableMs),
      fmt(r.totalMs),
      fmt(stepOf(r, 'fence-old-master')),
      fmt(stepOf(r, 'promote')),
      fmt(stepOf(r, 'wait-writable')),
      fmt(doneAt(r, 'wait-writable')),
      fmt(stepOf(r, 'restart-chef-services')),
      fmt(doneAt(r, 'restart-chef-services')),
      fmt(stepOf(r, 'reindex')),
      String(r.failuresAfterFirst),
    ];
    console.log(row.map((c) => c.padStart(12)).join('') + (r.ok ? '' : `  failover exited ${r.run.code}`));
    console.log(
      `${''.padStart(12)}writer: ${r.attempts} attempts (${r.statuses}); machine ${((r.busyBefore ?? 0) * 100).toFixed(0)}% busy before the kill`,
    );
  }
  const med = (f: (r: RunResult) => number | undefined): string => {
    const xs = results.map(f).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? '-' : fmt(median(xs));
  };
  console.log(
    [
      'median',
      med((r) => firstStepAtMs(r.run)),
      med((r) => r.firstAcceptedMs),
      med((r) => r.stableMs),
      med((r) => r.totalMs),
      med((r) => stepOf(r, 'fence-old-master')),
      med((r) => stepOf(r, 'promote')),
      med((r) => stepOf(r, 'wait-writable')),
      med((r) => doneAt(r, 'wait-writable')),
      med((r) => stepOf(r, 'restart-chef-services')),
      med((r) => doneAt(r, 'restart-chef-services')),
      med((r) => stepOf(r, 'reindex')),
      '',
    ]
      .map((c) => c.padStart(12))
      .join(''),
  );
  console.log(`
plan@        when the first step started (node start, config, facts, decision came before)
first-write  the end of the first PUT /nodes answered 200/201 by chef-b's Chef API
stable       the end of the first accepted write after which no write failed
fo-total     failover process start to exit (includes reindex)
fence, promote, wait-wr, restart, reindex: step durations printed by chef-ha-ctl
writable@, restart@: when wait-writable and restart-chef-services finished
fails-after  writes refused after the first accepted one (erchef restart)`);
  const firstWrites = results.map((r) => r.firstAcceptedMs).filter((x): x is number => x !== undefined);
  const m = median(firstWrites);
  console.log(
    `\nmedian failover start → first accepted write: ${fmt(m)} s (target ≤ 1.50 s): ${firstWrites.length === results.length && m <= 1500 ? 'target met' : 'target MISSED'}`,
  );
  if (results.some((r) => !r.ok)) {
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
