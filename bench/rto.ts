/**
 * Benchmark: failover RTO through HAProxy, as a Chef client behind the proxy sees it.
 *
 *   npx tsx bench/rto.ts [--runs 10] [--mode sync|async] [--quiet-wait-s 60]
 *
 * One netns sandbox with a proxy host (test/faults/lib.ts: preparePair: setup-master, setup-slave,
 * health-server and monitor on both nodes, HAProxy from haproxy-config). Each run: the fault suite's writer
 * sends Chef API and SQL writes through HAProxy; after six acknowledged writes from the master comes
 * `kill -9` of its postmaster, and in the same tick `chef-ha-ctl failover` starts on the standby (an
 * operator who reacts at once). RTO = kill -9 → the first write acknowledged by the new primary through
 * HAProxy. Then `rejoin` on the old master, so that the roles alternate from run to run. Prints each run
 * and the median and p95 (target: median <= 1.5 s). Nothing here asserts.
 */
import { parseArgs } from 'node:util';
import { Writer, preparePair, rejoin, type Pair } from '../test/faults/lib.js';
import { postmasterPid, runCli } from '../test/e2e/helpers.js';
import { loadLine, machineLine, median, seconds, waitForQuiet, withSandboxDir } from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'sync' },
    'quiet-wait-s': { type: 'string', default: '60' },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  throw new Error('--runs must be a positive integer');
}
if (values.mode !== 'sync' && values.mode !== 'async') {
  throw new Error('--mode must be sync or async');
}
const sync = values.mode === 'sync';
const quietMs = Number(values['quiet-wait-s']) * 1000;

function p95(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] ?? Number.NaN;
}

interface RunRow {
  run: number;
  from: string;
  to: string;
  rtoMs: number;
  failoverMs: number;
  failoverCode: number;
  refused: number;
}

async function oneRun(pair: Pair, run: number): Promise<RunRow> {
  const old = pair.master;
  const next = pair.standby;
  const writer = new Writer(pair.sb, `rto${run}`);
  writer.start();
  try {
    if (!(await writer.waitForAcks(6, old.name, 120_000))) {
      throw new Error(`no writes acknowledged by ${old.name} through HAProxy before the fault`);
    }
    const pm = await postmasterPid(old.postgres.dataDir);
    if (pm === undefined) {
      throw new Error(`${old.name}'s PostgreSQL does not run`);
    }
    const failuresBefore = writer.failures;
    const killedAt = Date.now();
    process.kill(pm, 'SIGKILL');
    const failover = runCli(next, ['failover'], { timeoutMs: 300_000 });
    const acked = await writer.waitForAcks(1, next.name, 120_000);
    const firstAck = writer.acks.find((a) => a.node === next.name && a.at >= killedAt);
    const f = await failover;
    const failoverMs = Date.now() - killedAt;
    if (!acked || !firstAck) {
      throw new Error(
        `no write acknowledged by ${next.name} within 120 s (failover exit ${f.code}):\n${f.stderr}`,
      );
    }
    return {
      run,
      from: old.name,
      to: next.name,
      rtoMs: firstAck.at - killedAt,
      failoverMs,
      failoverCode: f.code,
      refused: writer.failures - failuresBefore,
    };
  } finally {
    await writer.stop();
  }
}

console.log(await machineLine());
const rows: RunRow[] = [];
await withSandboxDir('chef-ha-bench-rto-', async (dir) => {
  const pair = await preparePair(dir, sync);
  console.log(`${values.mode} streaming, HAProxy on the proxy host, operator runs failover at once`);
  console.log(
    'run  from → to        RTO (kill → first ack via HAProxy)  failover exit  failover end  refused writes  CPU busy before',
  );
  for (let run = 1; run <= runs; run++) {
    const busy = await waitForQuiet(`run ${run}`, quietMs);
    const [old, next] = [pair.master, pair.standby];
    const r = await oneRun(pair, run);
    rows.push(r);
    console.log(
      `${String(run).padStart(3)}  ${r.from} → ${r.to}   ${seconds(r.rtoMs).padStart(8)}                            ${String(r.failoverCode).padStart(4)}         ${seconds(r.failoverMs).padStart(8)}   ${String(r.refused).padStart(6)}          ${Math.round(busy * 100)}%`,
    );
    await rejoin(pair, old, next);
  }
});
const rto = rows.map((r) => r.rtoMs);
console.log(
  `RTO over ${rows.length} runs: median ${seconds(median(rto))}, p95 ${seconds(p95(rto))}, max ${seconds(Math.max(...rto))} (target: median <= 1.5 s)`,
);
console.log(loadLine());
