/**
 * Benchmark: the fault suite repeated.
 *
 *   npx tsx bench/faults.ts [--runs 10] [--mode sync|async|both] [--scenario NAME] [--keep]
 *
 * For each mode, one netns sandbox with a proxy host (test/faults/lib.ts: preparePair), then `--runs`
 * rounds of every scenario of the fault suite (the same code as test/faults/faults.test.ts), each with
 * the writer (Chef API and SQL writes through HAProxy) and the `/primary` sampler (every 100 ms).
 * Prints one line per scenario run, then a table per mode and scenario: runs, runs that failed to
 * complete, acknowledged writes, lost acknowledged writes, fenced-node writes and double-200 samples
 * (target: zero fenced-node writes and double-200 samples everywhere, zero lost writes in sync mode).
 * A double-200 sample also prints each node's /status just after it. --keep leaves the sandbox folder
 * (after `down`) with every node's chef-ha logs (var/log/chef-ha). Needs root and a built CLI
 * (`npm run build`). Nothing here asserts; a scenario that cannot complete is counted in "failed" and
 * the script exits 1 after the table.
 */
import { parseArgs } from 'node:util';
import { SCENARIOS, preparePair, runScenario } from '../test/faults/lib.js';
import { loadLine, machineLine, withSandboxDir } from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'both' },
    scenario: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  throw new Error('--runs must be a positive integer');
}
const modes: boolean[] =
  values.mode === 'sync'
    ? [true]
    : values.mode === 'async'
      ? [false]
      : values.mode === 'both'
        ? [true, false]
        : [];
if (modes.length === 0) {
  throw new Error('--mode must be sync, async or both');
}

interface Row {
  runs: number;
  failed: number;
  acks: number;
  lost: number;
  fenced: number;
  double200: number;
  samples: number;
}

console.log(await machineLine());
console.log(loadLine());
const table = new Map<string, Row>();
let failures = 0;
for (const sync of modes) {
  const mode = sync ? 'sync' : 'async';
  await withSandboxDir(
    `chef-ha-bench-faults-${mode}-`,
    async (dir) => {
      const pair = await preparePair(dir, sync);
      rounds: for (let run = 1; run <= runs; run++) {
        for (const [i, sc] of SCENARIOS.entries()) {
          if (values.scenario !== undefined && sc.name !== values.scenario) {
            continue;
          }
          const key = `${mode}  ${sc.name}`;
          const row = table.get(key) ?? {
            runs: 0,
            failed: 0,
            acks: 0,
            lost: 0,
            fenced: 0,
            double200: 0,
            samples: 0,
          };
          table.set(key, row);
          row.runs += 1;
          const started = Date.now();
          try {
            const r = await runScenario(pair, sc, `b${mode}${run}x${i}`);
            row.acks += r.verdict.acks;
            row.lost += r.verdict.lost.length;
            row.fenced += r.verdict.fencedWrites.length;
            row.double200 += r.double200;
            row.samples += r.samples;
            console.log(
              `${mode} run ${run} ${sc.name}: ${r.verdict.acks} acks, lost ${r.verdict.lost.length}, fenced ${r.verdict.fencedWrites.length}, double-200 ${r.double200}/${r.samples}, ${((Date.now() - started) / 1000).toFixed(1)} s${r.failover?.forcedCode === undefined ? '' : ' (failover needed --force)'}; ${loadLine()}`,
            );
            // when the double-200 samples were taken: after the scenario's start and its first failover
            if (r.doubles.length > 0) {
              const failoverAt = r.transitions[0]?.at;
              const rel = (iso: string): string => {
                const at = Date.parse(iso);
                return `+${((at - started) / 1000).toFixed(2)} s${failoverAt === undefined ? '' : ` (failover start +${((at - failoverAt) / 1000).toFixed(2)} s)`}`;
              };
              console.log(
                `  double-200 samples at ${r.doubles.map(rel).join(', ')}; notes: ${r.notes.join('; ')}`,
              );
              for (const d of r.doubleDetails) {
                console.log(`  ${d}`);
              }
            }
          } catch (error) {
            row.failed += 1;
            failures += 1;
            console.log(
              `${mode} run ${run} ${sc.name}: FAILED to complete: ${String(error).split('\n').slice(0, 30).join('\n  ')}`,
            );
            // the pair is in an unknown state: the rest of this mode's rounds would measure nothing
            break rounds;
          }
        }
      }
    },
    values.keep,
  );
}

const header = ['mode  scenario', 'runs', 'failed', 'acks', 'lost', 'fenced', 'double-200', 'samples'];
const rows = [...table.entries()].map(([k, r]) => [
  k,
  String(r.runs),
  String(r.failed),
  String(r.acks),
  String(r.lost),
  String(r.fenced),
  String(r.double200),
  String(r.samples),
]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (cells: readonly string[]): string =>
  cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
console.log('');
console.log(line(header));
for (const r of rows) {
  console.log(line(r));
}
process.exitCode = failures > 0 ? 1 : 0;
