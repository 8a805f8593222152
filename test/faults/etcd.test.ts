/**
 * Automatic failover with etcd as the third voter (issue 6), on a netns sandbox with a proxy host that
 * runs HAProxy and one etcd member, synchronous streaming, failover.automatic on both nodes, health-server
 * and monitor on both as services. NO operator: the monitors fail over by themselves.
 *
 * Scenarios, each with the writer (Chef API and SQL writes through HAProxy) and the sampler of lib.ts:
 *   - the etcd host cut off from both nodes for longer than the TTL: nothing changes (no takeover, no
 *     fence, same term; the primary stays primary through the failsafe: its standby follows it);
 *   - the primary partitioned (from the standby, etcd and the proxy): the standby takes the key after the
 *     lease expired and promotes; the old primary fences itself; rejoin afterwards;
 *   - paused (`chef-ha-ctl pause`), kill -9 of the primary's PostgreSQL: no takeover for longer than the
 *     TTL (status explains: paused); after `resume` the standby takes over (the crashed primary fenced
 *     itself and released the key); rejoin;
 *   - the primary's whole node frozen (SIGSTOP of every process in its namespace) for longer than the
 *     TTL: the standby takes over; the thawed old primary fences itself; rejoin.
 * Pass: zero acknowledged writes lost, no write acknowledged by the old primary after the new one took
 * its first, never two nodes answering 200 on /primary, and the standby promoted only after the old
 * primary's leader key was gone (LeaseWatch).
 *
 * Run: npm run build && npm run test:faults:etcd
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, inRecovery, runCli, removeSandbox } from '../e2e/helpers.js';
import { cutLink, healLink, healNode, partitionNode } from '../sandbox/index.js';
import { Sampler, Writer, check, crashPostgres, logsOf, rejoin, type Pair, type Transition } from './lib.js';
import {
  LeaseWatch,
  isFenced,
  monitorLines,
  openNodeDcs,
  prepareAutoPair,
  signalNode,
  waitTakeoverDone,
} from './etcd-lib.js';
import type { Dcs } from '../../src/monitor/dcs.js';

const RESUME_MS = 120_000;
/** Longer than failover.ttlMs (10 s with the defaults). */
const FAULT_MS = 15_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Run {
  readonly writer: Writer;
  readonly sampler: Sampler;
  readonly transitions: Transition[];
}

async function withTraffic(pair: Pair, tag: string, body: (r: Run) => Promise<void>): Promise<Run> {
  const r: Run = { writer: new Writer(pair.sb, tag), sampler: new Sampler(pair.sb), transitions: [] };
  r.sampler.start();
  r.writer.start();
  try {
    await r.writer.waitForAcks(6, pair.master.name, RESUME_MS);
    await body(r);
    await r.writer.waitForAcks(4, pair.master.name, RESUME_MS);
  } finally {
    await r.writer.stop();
    await r.sampler.stop();
  }
  return r;
}

async function assertClean(pair: Pair, r: Run, name: string): Promise<void> {
  const v = await check(pair.master, r.writer.acks, r.transitions);
  console.log(
    `${name}: ${v.acks} acknowledged writes ${JSON.stringify(v.byNode)}, lost ${v.lost.length}, fenced-node writes ${v.fencedWrites.length}, double-200 samples ${r.sampler.double200} of ${r.sampler.samples}, unacknowledged attempts ${r.writer.failures}`,
  );
  assert.ok(v.acks > 0, 'the writer got acknowledgements');
  assert.ok(r.sampler.samples > 0, 'the sampler sampled');
  assert.deepEqual(v.lost, [], 'sync: no acknowledged write lost');
  assert.deepEqual(
    v.fencedWrites.map((a) => `${a.kind} ${a.id} by ${a.node}`),
    [],
    'no write acknowledged by a superseded node after the new primary took its first',
  );
  assert.deepEqual(r.sampler.doubles, [], 'never two nodes answering 200 on /primary at once');
}

/** A takeover by the standby: promoted after the old key was gone, the old primary fenced, rejoined. */
async function takeover(
  pair: Pair,
  dcs: Dcs,
  tag: string,
  fault: () => Promise<void>,
  heal: () => Promise<void>,
): Promise<void> {
  const old = pair.master;
  const next = pair.standby;
  const doneBefore = (await monitorLines(next, /is the primary now/)).length;
  const watch = new LeaseWatch(dcs, next);
  watch.start();
  let r: Run | undefined;
  try {
    r = await withTraffic(pair, tag, async (run) => {
      run.transitions.push({ from: old.name, to: next.name, at: Date.now() });
      await fault();
      try {
        await run.writer.waitForAcks(6, next.name, RESUME_MS);
      } finally {
        await heal();
      }
      await assertEventually(() => Promise.resolve(isFenced(old)), `${old.name} fenced after the takeover`);
      pair.master = next;
      pair.standby = old;
    });
  } finally {
    await watch.stop();
  }
  const lastOld = watch.lastHeldBy(old.name);
  console.log(
    `${tag}: promoted at ${watch.promotedAt === undefined ? '?' : new Date(watch.promotedAt).toISOString()}, ${old.name} last seen holding the key at ${lastOld === undefined ? 'never' : new Date(lastOld).toISOString()}, terms ${watch.terms().join(',')}`,
  );
  assert.ok(watch.promotedAt !== undefined, `${next.name} was promoted`);
  assert.ok(
    lastOld === undefined || watch.promotedAt > lastOld,
    `no promotion while ${old.name} held the lease (promoted ${watch.promotedAt}, key held until ${lastOld})`,
  );
  assert.ok(
    watch.samples.some((s) => s.leader === next.name),
    `${next.name} took the leader key`,
  );
  await assertClean(pair, r, tag);
  const took = await monitorLines(next, /took the leader key/);
  assert.ok(took.length > 0, `${next.name}'s monitor logged its takeover`);
  // the old primary comes back as the standby of the new one (roles already swapped in pair), once the
  // takeover's plan has finished (its ssh fence holds the old primary's lock)
  await waitTakeoverDone(next, doneBefore);
  await rejoin(pair, old, next);
  pair.master = next;
  pair.standby = old;
}

async function assertEventually(probe: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for: ${what}`);
    }
    await sleep(250);
  }
}

describe('automatic failover with etcd, sync streaming', { timeout: 1_800_000 }, () => {
  let dir = '';
  let pair: Pair | undefined;
  let dcs: Dcs | undefined;

  before(async () => {
    dir = await makeTempDir('chef-ha-faults-etcd-');
    pair = await prepareAutoPair(dir);
    dcs = await openNodeDcs(pair.master);
  });

  after(async () => {
    dcs?.close();
    await removeSandbox(dir);
  });

  const guarded = async (fn: (p: Pair, d: Dcs) => Promise<void>): Promise<void> => {
    assert.ok(pair && dcs, 'the pair is up');
    try {
      await fn(pair, dcs);
    } catch (error) {
      const logs = (await Promise.all(pair.sb.nodes.map((n) => logsOf(n)))).join('\n');
      throw new Error(`${String(error)}\n${logs}`, { cause: error });
    }
  };

  test('etcd host cut off from both nodes longer than the TTL: nothing changes', () =>
    guarded(async (p, d) => {
      const termBefore = (await d.read()).term;
      const r = await withTraffic(p, 'etcd-cut', async () => {
        await cutLink(p.sb, p.master.name, 'proxy');
        await cutLink(p.sb, p.standby.name, 'proxy');
        try {
          await sleep(FAULT_MS);
        } finally {
          await healLink(p.sb, p.master.name, 'proxy');
          await healLink(p.sb, p.standby.name, 'proxy');
        }
      });
      await assertClean(p, r, 'etcd host cut off');
      assert.equal(isFenced(p.master), false, `${p.master.name} did not fence itself`);
      assert.equal(await inRecovery(p.standby), true, `${p.standby.name} is still a standby`);
      await assertEventually(
        async () => (await d.read()).leader?.node === p.master.name,
        `${p.master.name} holding the key again`,
      );
      assert.equal((await d.read()).term, termBefore, 'the term did not move (no takeover)');
      assert.deepEqual(await monitorLines(p.standby, /took the leader key/), [], 'no takeover attempt');
      assert.deepEqual(await monitorLines(p.master, /monitor: fencing/), [], 'no fencing on the primary');
      const failsafe = await monitorLines(p.master, /failsafe/);
      assert.ok(failsafe.length > 0, 'the primary stayed up through the failsafe and logged it');
      const st = await runCli(p.standby, ['--json', 'status']);
      const auto = (JSON.parse(st.stdout) as { automatic?: { leader: string | null; explain: string } })
        .automatic;
      assert.equal(auto?.leader, p.master.name, `status names the leader: ${st.stdout}`);
      assert.match(auto?.explain ?? '', /holds the leader key/);
    }));

  test('primary partitioned from the standby and etcd: the standby takes over, the old primary fences itself', () =>
    guarded(async (p, d) => {
      const old = p.master;
      await takeover(
        p,
        d,
        'partition',
        () => partitionNode(p.sb, old.name),
        () => healNode(p.sb, old.name),
      );
      assert.ok(
        (await monitorLines(old, /monitor: fencing/)).length > 0,
        `${old.name}'s monitor fenced it (deadline or superseded)`,
      );
    }));

  test('paused: kill -9 of the primary leads to no takeover until resume', () =>
    guarded(async (p, d) => {
      const old = p.master;
      const next = p.standby;
      await takeover(
        p,
        d,
        'paused',
        async () => {
          const pause = await runCli(next, ['pause', '--reason', 'fault suite']);
          assert.equal(pause.code, 0, pause.stderr);
          await crashPostgres(old);
          await sleep(FAULT_MS);
          assert.equal(await inRecovery(next), true, `${next.name} was not promoted while paused`);
          const st = await runCli(next, ['--json', 'status']);
          const auto = (JSON.parse(st.stdout) as { automatic?: { paused: boolean; explain: string } })
            .automatic;
          assert.equal(auto?.paused, true, st.stdout);
          assert.match(auto?.explain ?? '', /paused/);
          assert.ok((await monitorLines(next, /paused/)).length > 0, `${next.name} logged why it waits`);
          const resume = await runCli(next, ['resume']);
          assert.equal(resume.code, 0, resume.stderr);
        },
        () => Promise.resolve(),
      );
    }));

  test('primary node frozen (SIGSTOP) longer than the TTL: the standby takes over; thawed, the old primary fences itself', () =>
    guarded(async (p, d) => {
      const old = p.master;
      let frozen = 0;
      await takeover(
        p,
        d,
        'freeze',
        async () => {
          frozen = await signalNode(p.sb, old, 'SIGSTOP');
        },
        async () => {
          await sleep(Math.max(0, FAULT_MS - 10_000));
          await signalNode(p.sb, old, 'SIGCONT');
        },
      );
      assert.ok(frozen > 0, 'processes were frozen');
    }));
});
