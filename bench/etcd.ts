/**
 * Benchmark of automatic failover with etcd (no operator: the monitors fail over by themselves).
 *
 *   npx tsx bench/etcd.ts [--runs 10] [--fault both|kill|partition] [--trace] [--ttl-ms N]
 *                                                  RTO from kill -9 of the master's PostgreSQL, and from a
 *                                                  partition of the master, to the first write acknowledged
 *                                                  through HAProxy by the new primary; median and p95 each;
 *                                                  --trace prints the new primary's monitor events per run;
 *                                                  --ttl-ms sets failover.ttlMs (default 10000) first
 *   npx tsx bench/etcd.ts --random-minutes 10      random faults (kill -9, partition, node freeze, etcd
 *                                                  host cut off) for that long, writer + sampler + the
 *                                                  lost-write checker of the fault suite running throughout
 *
 * One netns sandbox with a proxy host (HAProxy + one etcd member), synchronous streaming, default
 * timings (failover.ttlMs 10000, failover.loopMs 1000), health-server and monitor as services on both
 * nodes. After each takeover the old master is healed and rejoined (`chef-ha-ctl rejoin`), so the roles
 * alternate. Needs root and a built CLI (`npm run build`).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { inRecovery, makeTempDir, removeSandbox } from '../test/e2e/helpers.js';
import {
  cutLink,
  healLink,
  healNode,
  partitionNode,
  startServices,
  stopServices,
} from '../test/sandbox/index.js';
import {
  Sampler,
  Writer,
  check,
  crashPostgres,
  rejoin,
  type Pair,
  type Transition,
} from '../test/faults/lib.js';
import {
  isFenced,
  monitorLines,
  openNodeDcs,
  prepareAutoPair,
  signalNode,
  waitTakeoverDone,
} from '../test/faults/etcd-lib.js';
import { loadLine, machineLine, median, mustCli, sleep } from './lib.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    'random-minutes': { type: 'string' },
    fault: { type: 'string', default: 'both' },
    'ttl-ms': { type: 'string' },
    trace: { type: 'boolean', default: false },
  },
});
const FAULTS = { both: ['kill -9', 'partition'], kill: ['kill -9'], partition: ['partition'] } as const;
const chosenFaults: readonly Fault[] | undefined = FAULTS[values.fault as keyof typeof FAULTS];
if (chosenFaults === undefined) {
  console.error(`--fault must be both, kill or partition, not ${values.fault}`);
  process.exit(2);
}
const runFaults: readonly Fault[] = chosenFaults;
const runs = Number(values.runs);
const randomMinutes = values['random-minutes'] === undefined ? undefined : Number(values['random-minutes']);
if (!Number.isInteger(runs) || runs < 1 || (randomMinutes !== undefined && !(randomMinutes > 0))) {
  console.error('usage: npx tsx bench/etcd.ts [--runs N] | --random-minutes M');
  process.exit(2);
}

const RESUME_MS = 180_000;

function p95(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] ?? NaN;
}

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

type Fault = 'kill -9' | 'partition' | 'freeze' | 'etcd cut';

/** Injects the fault on the master; resolves the heal (undefined: nothing to heal). */
async function inject(pair: Pair, fault: Fault): Promise<(() => Promise<void>) | undefined> {
  const m = pair.master;
  switch (fault) {
    case 'kill -9':
      await crashPostgres(m);
      return undefined;
    case 'partition':
      await partitionNode(pair.sb, m.name);
      return () => healNode(pair.sb, m.name);
    case 'freeze':
      await signalNode(pair.sb, m, 'SIGSTOP');
      return async () => {
        await signalNode(pair.sb, m, 'SIGCONT');
      };
    case 'etcd cut':
      await cutLink(pair.sb, pair.master.name, 'proxy');
      await cutLink(pair.sb, pair.standby.name, 'proxy');
      return async () => {
        await healLink(pair.sb, pair.master.name, 'proxy');
        await healLink(pair.sb, pair.standby.name, 'proxy');
      };
  }
}

/**
 * --ttl-ms: failover.ttlMs in both nodes' chef-ha.json, `check` run on each (it refuses incoherent
 * timings), then health-server and monitor restarted, as an operator changing the setting would.
 */
async function setTtl(pair: Pair, ttlMs: number): Promise<void> {
  for (const n of pair.sb.nodes) {
    const cfg = JSON.parse(await readFile(n.config, 'utf8')) as { failover?: Record<string, unknown> };
    cfg.failover = { ...cfg.failover, ttlMs };
    await writeFile(n.config, `${JSON.stringify(cfg, null, 2)}\n`);
    await mustCli(n, ['check']);
  }
  await stopServices(pair.sb);
  await startServices(pair.sb);
  const dcs = await openNodeDcs(pair.master);
  try {
    for (let i = 0; i < 240; i++) {
      const v = await dcs.read().catch(() => undefined);
      if (v?.leader?.node === pair.master.name) {
        console.log(
          `failover.ttlMs ${ttlMs} on both nodes (check passed); ${pair.master.name} holds the key`,
        );
        return;
      }
      await sleep(250);
    }
    throw new Error(`${pair.master.name} did not take the leader key again after the restart`);
  } finally {
    dcs.close();
  }
}

/**
 * --trace: the new primary's monitor events since the fault, as seconds after it (the reporter stamps
 * each event with its ISO time), and the failover plan's step lines that followed them.
 */
async function printTrace(node: Pair['master'], t0: number): Promise<void> {
  await sleep(1_000);
  let on = false;
  for (const line of await monitorLines(node, /./)) {
    const at = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) (.*)$/.exec(line);
    if (at?.[1] !== undefined) {
      const ms = Date.parse(at[1]) - t0;
      on = ms >= -2_000;
      if (on) {
        console.log(`    ${(ms / 1000).toFixed(2).padStart(7)} s  ${at[2] ?? ''}`);
      }
    } else if (on && /^\[\d+\/\d+\]/.test(line.trim())) {
      console.log(`              ${line.trim()}`);
    }
  }
}

/** One takeover: fault, first ack by the standby, heal, old master fenced, rejoin. Returns the RTO. */
async function takeover(
  pair: Pair,
  writer: Writer,
  fault: Fault,
  transitions: Transition[],
): Promise<number> {
  const old = pair.master;
  const next = pair.standby;
  await writer.waitForAcks(4, old.name, RESUME_MS);
  const doneBefore = (await monitorLines(next, /is the primary now/)).length;
  const from = writer.acks.length;
  const t0 = Date.now();
  transitions.push({ from: old.name, to: next.name, at: t0 });
  const heal = await inject(pair, fault);
  let rto = NaN;
  try {
    const ok = await writer.waitForAcks(1, next.name, RESUME_MS);
    const first = writer.acks.slice(from).find((a) => a.node === next.name);
    if (!ok || first === undefined) {
      throw new Error(`${fault}: no write acknowledged by ${next.name} within ${RESUME_MS} ms`);
    }
    rto = first.at - t0;
    if (values.trace) {
      await printTrace(next, t0);
    }
  } finally {
    if (fault === 'freeze') {
      await sleep(5_000);
    }
    await heal?.();
  }
  for (let i = 0; i < 240 && !isFenced(old); i++) {
    await sleep(250);
  }
  pair.master = next;
  pair.standby = old;
  await waitTakeoverDone(next, doneBefore);
  await rejoin(pair, old, next);
  return rto;
}

async function main(): Promise<void> {
  console.log(`# bench/etcd.ts on ${await machineLine()}; ${loadLine()}`);
  const dir = await makeTempDir('chef-ha-bench-etcd-');
  try {
    const pair = await prepareAutoPair(dir);
    if (values['ttl-ms'] !== undefined) {
      await setTtl(pair, Number(values['ttl-ms']));
    }
    const writer = new Writer(pair.sb, `bench${Date.now()}`);
    const sampler = new Sampler(pair.sb);
    const transitions: Transition[] = [];
    writer.start();
    sampler.start();
    const rtos: Record<string, number[]> = { 'kill -9': [], partition: [] };
    const unexpected: string[] = [];
    let failure: unknown;
    try {
      if (randomMinutes === undefined) {
        for (let i = 0; i < runs; i++) {
          for (const fault of runFaults) {
            const rto = await takeover(pair, writer, fault, transitions);
            rtos[fault]?.push(rto);
            console.log(`run ${i + 1} ${fault}: RTO ${s(rto)} (${loadLine()})`);
          }
        }
      } else {
        const end = Date.now() + randomMinutes * 60_000;
        const faults: Fault[] = ['kill -9', 'partition', 'freeze', 'etcd cut'];
        let n = 0;
        while (Date.now() < end) {
          const fault = faults[Math.floor(Math.random() * faults.length)] ?? 'kill -9';
          n += 1;
          if (fault === 'etcd cut') {
            const old = pair.master;
            const next = pair.standby;
            const doneBefore = (await monitorLines(next, /is the primary now/)).length;
            const heal = await inject(pair, fault);
            await sleep(15_000);
            await heal?.();
            await sleep(5_000);
            if (isFenced(old)) {
              // not expected: the primary fenced itself (its failsafe did not see the standby in time);
              // the standby takes over once etcd answers again
              unexpected.push(`fault ${n} etcd cut: ${old.name} fenced itself`);
              transitions.push({ from: old.name, to: next.name, at: Date.now() });
              pair.master = next;
              pair.standby = old;
              await waitTakeoverDone(next, doneBefore);
              await rejoin(pair, old, next);
              console.log(`fault ${n} ${fault}: ${old.name} FENCED ITSELF; ${next.name} took over`);
            } else {
              await writer.waitForAcks(4, pair.master.name, RESUME_MS);
              console.log(`fault ${n} ${fault}: no takeover; writes resumed on ${pair.master.name}`);
            }
          } else {
            const rto = await takeover(pair, writer, fault, transitions);
            console.log(`fault ${n} ${fault}: RTO ${s(rto)} (${loadLine()})`);
          }
        }
      }
      await writer.waitForAcks(4, pair.master.name, RESUME_MS);
    } catch (error) {
      // the checker still runs on what was acknowledged so far
      failure = error;
      console.log(`run ended early: ${String(error)}`);
    } finally {
      await writer.stop();
      await sampler.stop();
    }
    if (failure !== undefined) {
      for (const n of pair.sb.nodes) {
        if (!(await inRecovery(n).catch(() => true))) {
          pair.master = n;
        }
      }
    }
    const v = await check(pair.master, writer.acks, transitions);
    for (const [fault, xs] of Object.entries(rtos)) {
      if (xs.length > 0) {
        console.log(
          `${fault}: ${xs.length} runs, RTO median ${s(median(xs))}, p95 ${s(p95(xs))}, min ${s(Math.min(...xs))}, max ${s(Math.max(...xs))}`,
        );
      }
    }
    console.log(
      `checker: ${v.acks} acknowledged writes ${JSON.stringify(v.byNode)}, lost ${v.lost.length}, fenced-node writes ${v.fencedWrites.length}, double-200 samples ${sampler.double200} of ${sampler.samples}, unacknowledged attempts ${writer.failures}`,
    );
    for (const u of unexpected) {
      console.log(`unexpected: ${u}`);
    }
    for (const l of v.lost.slice(0, 20)) {
      console.log(`  lost: ${l}`);
    }
    if (failure !== undefined || v.lost.length > 0 || v.fencedWrites.length > 0 || sampler.double200 > 0) {
      process.exitCode = 1;
    }
  } finally {
    await removeSandbox(dir);
  }
}

await main();
