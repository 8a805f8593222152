/**
 * Benchmark: the write stall on a synchronous master when its standby stops confirming, with
 * `chef-ha-ctl monitor` running on the master.
 *
 *   npx tsx bench/sync-degrade.ts [--runs 5] [--fault kill|stop]
 *
 * One two-node sandbox in synchronous mode: setup-master on chef-a, setup-slave --bundle on chef-b, the
 * monitor started on chef-a. Each run: wait until chef-b is the sync standby again and degraded.json is
 * gone; a writer PUTs /nodes/<name> to chef-a's Chef API in a tight loop; after 2 s plus a random
 * 0–200 ms (so the fault falls anywhere in the monitor's loop) the fault:
 *   kill  kill -9 of chef-b's postmaster (the walsender on chef-a ends at once);
 *   stop  SIGSTOP of chef-b's WAL receiver (a cut-off standby: the walsender and its `streaming` row stay
 *         until wal_sender_timeout, 60 s; only the age of the SyncRep waits shows the stall).
 * The writer goes on for 3 s. Then chef-b is restarted (kill) or resumed with SIGCONT (stop) and the
 * run waits for the monitor to restore sync mode.
 * Per run: the longest gap between acknowledged writes from 1 s before the fault (the stall; target
 * ≤ 2 s, Patroni: up to its ttl, 30 s by default), the longest gap in the 2 s before the fault (normal
 * jitter), fault → the monitor's degrade event, and back → restore. Prints medians. Needs root and a
 * built CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startNodePostgres } from '../test/sandbox/postgres.js';
import {
  CLI,
  bundlePath,
  killChild,
  loadLine,
  machineLine,
  median,
  mustCli,
  now,
  pair,
  postmasterPid,
  putNode,
  readNodeConfig,
  sleep,
  sql,
  waitFor,
  waitForQuiet,
  withSandbox,
  type SandboxNode,
} from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    fault: { type: 'string', default: 'kill' },
  },
});
const runs = Number(values.runs);
const fault = values.fault;
if (!Number.isInteger(runs) || runs < 1 || runs > 100 || (fault !== 'kill' && fault !== 'stop')) {
  console.error('usage: npx tsx bench/sync-degrade.ts [--runs N] [--fault kill|stop]');
  process.exit(2);
}

interface MonitorEvent {
  readonly atMs: number;
  readonly event: Record<string, unknown>;
}

function startMonitor(node: SandboxNode): { child: ChildProcess; events: MonitorEvent[] } {
  const child = spawn(process.execPath, [CLI, '--config', node.config, '--json', 'monitor'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  const events: MonitorEvent[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    const at = now();
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) {
        events.push({ atMs: at, event: JSON.parse(line) as Record<string, unknown> });
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => process.stderr.write(`  monitor: ${d.toString()}`));
  return { child, events };
}

function longestGap(acks: readonly number[], from: number, to: number): number {
  const xs = acks.filter((t) => t >= from && t <= to);
  let gap = 0;
  for (let i = 1; i < xs.length; i++) {
    gap = Math.max(gap, (xs[i] ?? 0) - (xs[i - 1] ?? 0));
  }
  return gap;
}

interface Run {
  readonly stallMs: number;
  readonly baselineMs: number;
  readonly degradeMs: number;
  readonly restoreMs: number;
  readonly acks: number;
}

const ms = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(0)} ms` : 'n/a');

await withSandbox('chef-ha-bench-degrade-', { sync: true }, async (sb) => {
  const [a, b] = pair(sb);
  console.log(`machine: ${await machineLine()}`);
  await mustCli(a, ['setup-master']);
  await mustCli(b, ['setup-slave', '--bundle', await bundlePath(a)]);
  const stateA = (await readNodeConfig(a)).stateDir;
  const mon = startMonitor(a);
  const results: Run[] = [];
  try {
    for (let r = 1; r <= runs; r++) {
      await waitFor(
        'chef-b sync and no degraded.json',
        async () =>
          !existsSync(join(stateA, 'degraded.json')) &&
          (await sql(
            a,
            `SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'), '-')`,
            'postgres',
          )) === 'sync',
        120_000,
      );
      const busy = await waitForQuiet(`run ${r}`, 20_000);
      const acks: number[] = [];
      let stop = false;
      let seq = 0;
      const writer = (async () => {
        while (!stop) {
          const status = await putNode(a.chefApi, `degrade-${r}-${seq++}`, 10_000);
          if (status === 200 || status === 201) {
            acks.push(now());
          }
        }
      })();
      await sleep(2000 + Math.random() * 200);
      const eventsBefore = mon.events.length;
      let faultAt: number;
      let walReceiver = 0;
      if (fault === 'kill') {
        const pm = await postmasterPid(b.postgres.dataDir);
        if (pm === undefined) {
          throw new Error('chef-b is not running');
        }
        faultAt = now();
        process.kill(pm, 'SIGKILL');
      } else {
        walReceiver = Number(await sql(b, 'SELECT pid FROM pg_stat_wal_receiver', 'postgres'));
        faultAt = now();
        process.kill(walReceiver, 'SIGSTOP');
      }
      await sleep(3000);
      stop = true;
      await writer;
      const end = now();
      const degrade = mon.events.slice(eventsBefore).find((e) => e.event['event'] === 'degrade');
      const backAt = now();
      if (fault === 'kill') {
        let started = await startNodePostgres(b);
        for (let i = 0; i < 20 && started.start?.code !== 0; i++) {
          await sleep(500);
          started = await startNodePostgres(b);
        }
        if (started.start?.code !== 0) {
          throw new Error(
            `chef-b does not start again: ${started.start?.stderr ?? started.hook?.stderr ?? ''}`,
          );
        }
      } else {
        process.kill(walReceiver, 'SIGCONT');
      }
      await waitFor(
        'the restore event',
        () => Promise.resolve(mon.events.slice(eventsBefore).some((e) => e.event['event'] === 'restore')),
        120_000,
      );
      const restore = mon.events.slice(eventsBefore).find((e) => e.event['event'] === 'restore');
      const run: Run = {
        stallMs: longestGap(acks, faultAt - 1000, end),
        baselineMs: longestGap(acks, faultAt - 2000, faultAt),
        degradeMs: degrade ? degrade.atMs - faultAt : Number.NaN,
        restoreMs: restore ? restore.atMs - backAt : Number.NaN,
        acks: acks.length,
      };
      results.push(run);
      console.log(
        `run ${r} (${fault}, CPU ${(busy * 100).toFixed(0)}% busy before): stall ${ms(run.stallMs)}, baseline gap ${ms(run.baselineMs)}, fault→degrade event ${ms(run.degradeMs)}, back→restore event ${ms(run.restoreMs)}, ${run.acks} writes acknowledged; ${loadLine()}`,
      );
    }
  } finally {
    killChild(mon.child);
  }
  const col = (f: (x: Run) => number): string => ms(median(results.map(f)));
  console.log(
    `\nmedian over ${results.length} runs (${fault}): stall ${col((x) => x.stallMs)} (max ${ms(Math.max(...results.map((x) => x.stallMs)))}), baseline gap ${col((x) => x.baselineMs)}, fault→degrade ${col((x) => x.degradeMs)}, back→restore ${col((x) => x.restoreMs)}`,
  );
});
