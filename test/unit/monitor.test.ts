import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decideMonitor,
  estimateMissingMs,
  parseDegradedRecord,
  type DegradedRecord,
  type LocalSample,
  type MonitorInput,
  type StandbyRow,
} from '../../src/monitor/decide.js';
import { decideGuard, parseCheckpointTimeline, type GuardFacts } from '../../src/monitor/guard.js';
import { probeLocal, probePeer, runMonitor, withTimeout } from '../../src/monitor/loop.js';
import { config as buildConfig, MiB } from '../fakes/config.js';
import { commandContext } from '../fakes/context.js';
import type { Postgres } from '../../src/ports/index.js';
import { planGuardDropInSteps, serviceStep, type Rendered } from '../../src/commands/common.js';
import { executePlan } from '../../src/core/execute.js';
import type { Plan } from '../../src/core/plan.js';
import { localFacts } from '../fakes/facts.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const WANT = 'FIRST 1 (chef_ha_db2)';
const syncCfg = buildConfig({ replication: { synchronous: true } });

const streamingSync: StandbyRow = {
  state: 'streaming',
  syncState: 'sync',
  flushLsn: '0/3000000',
  replyTimeMs: NOW - 5,
};

function primary(over: Partial<LocalSample> = {}): LocalSample {
  return {
    inRecovery: false,
    readOnly: false,
    timeline: 1,
    currentLsn: '0/3000000',
    synchronousStandbyNames: WANT,
    standby: streamingSync,
    oldestSyncRepWaitMs: null,
    nowMs: NOW,
    probeMs: 20,
    ...over,
  };
}

function input(over: Partial<MonitorInput> = {}): MonitorInput {
  return { local: primary(), peer: undefined, degraded: undefined, fenced: false, now: NOW, ...over };
}

const degradedRecord: DegradedRecord = {
  since: new Date(NOW - 10_000).toISOString(),
  lsn: '0/2000000',
  standby: 'db2',
};

describe('monitor: sync degrade', () => {
  test('does nothing while the synchronous standby confirms', () => {
    const d = decideMonitor(input(), { lastConfirmedAt: NOW - 1000 }, syncCfg, WANT);
    assert.equal(d.action.action, 'none');
    assert.deepEqual(d.memory, { lastConfirmedAt: NOW });
  });

  test('degrades when a SyncRep wait is older than the bound and the standby has not replied', () => {
    const local = primary({
      oldestSyncRepWaitMs: 900,
      standby: { ...streamingSync, replyTimeMs: NOW - 950 },
    });
    const d = decideMonitor(input({ local }), { lastConfirmedAt: NOW }, syncCfg, WANT);
    assert.equal(d.action.action, 'degrade');
    assert.ok(d.action.action === 'degrade');
    assert.equal(d.action.lsn, '0/3000000');
    assert.match(
      d.action.reason,
      /db2 has not replied: no synchronous confirmation for 900 ms, oldest commit waiting 900 ms/,
    );
  });

  test('degrades when the standby is gone (killed) for about degradeAfterMs, even with no commit waiting', () => {
    const local = primary({ standby: undefined });
    const early = decideMonitor(input({ local }), { lastConfirmedAt: NOW - 300 }, syncCfg, WANT);
    assert.equal(early.action.action, 'none');
    assert.deepEqual(early.memory, { lastConfirmedAt: NOW - 300 });
    const late = decideMonitor(input({ local }), { lastConfirmedAt: NOW - 800 }, syncCfg, WANT);
    assert.equal(late.action.action, 'degrade');
    assert.match(late.action.reason, /^db2 is not connected: no synchronous confirmation for 800 ms/);
  });

  test('acts one loop early so that the stall stays within degradeAfterMs', () => {
    // degradeAfterMs 1000, loopMs 200, probe 20 ms: 780 ms missing is enough.
    const local = primary({ standby: undefined });
    assert.equal(
      decideMonitor(input({ local }), { lastConfirmedAt: NOW - 779 }, syncCfg, WANT).action.action,
      'none',
    );
    assert.equal(
      decideMonitor(input({ local }), { lastConfirmedAt: NOW - 780 }, syncCfg, WANT).action.action,
      'degrade',
    );
  });

  test('does not degrade for a long statement that just entered its SyncRep wait while the standby replies', () => {
    const local = primary({
      oldestSyncRepWaitMs: 5_000,
      standby: { ...streamingSync, replyTimeMs: NOW - 3 },
    });
    const d = decideMonitor(input({ local }), { lastConfirmedAt: NOW }, syncCfg, WANT);
    assert.equal(d.action.action, 'none');
  });

  test('counts a standby that streams but is not sync (wrong name) as not confirming', () => {
    const local = primary({ standby: { ...streamingSync, syncState: 'async' }, oldestSyncRepWaitMs: 900 });
    const d = decideMonitor(input({ local }), { lastConfirmedAt: NOW - 100 }, syncCfg, WANT);
    assert.equal(d.action.action, 'degrade');
    assert.match(d.action.reason, /db2 is async, not sync/);
  });

  test('does nothing in asynchronous mode', () => {
    const local = primary({ synchronousStandbyNames: '', standby: undefined, oldestSyncRepWaitMs: 5000 });
    const d = decideMonitor(input({ local }), { lastConfirmedAt: 0 }, buildConfig(), WANT);
    assert.deepEqual(d.action, { action: 'none', reason: 'asynchronous mode is configured' });
  });

  test('does nothing on a standby', () => {
    const local = primary({ inRecovery: true, currentLsn: null, standby: undefined });
    assert.equal(
      decideMonitor(input({ local }), { lastConfirmedAt: 0 }, syncCfg, WANT).action.action,
      'none',
    );
  });

  test('does not switch on sync mode that the monitor did not switch off (setup-master waits for its slave)', () => {
    const local = primary({ synchronousStandbyNames: '', standby: streamingSync });
    const d = decideMonitor(input({ local }), { lastConfirmedAt: 0 }, syncCfg, WANT);
    assert.equal(d.action.action, 'none');
  });
});

describe('monitor: restore', () => {
  const async = (row: StandbyRow | undefined, currentLsn = '0/3000000'): LocalSample =>
    primary({ synchronousStandbyNames: '', standby: row, currentLsn });

  test('restores sync mode once the standby streams again and has caught up', () => {
    const local = async({
      state: 'streaming',
      syncState: 'async',
      flushLsn: '0/3000000',
      replyTimeMs: NOW - 2,
    });
    const d = decideMonitor(
      input({ local, degraded: degradedRecord }),
      { lastConfirmedAt: 0 },
      syncCfg,
      WANT,
    );
    assert.deepEqual(d.action, {
      action: 'restore',
      reason: 'db2 streams again and has caught up (0 B behind, flushed up to 0/3000000)',
      synchronousStandbyNames: WANT,
    });
    assert.deepEqual(d.memory, { lastConfirmedAt: NOW });
  });

  test('stays degraded while the standby streams but is behind more than restoreMaxLagBytes', () => {
    const local = async(
      { state: 'streaming', syncState: 'async', flushLsn: '0/3000000', replyTimeMs: NOW - 2 },
      '0/3400000',
    );
    const d = decideMonitor(
      input({ local, degraded: degradedRecord }),
      { lastConfirmedAt: 0 },
      syncCfg,
      WANT,
    );
    assert.equal(d.action.action, 'none');
    assert.match(d.action.reason, /streams but is 4\.0 MiB behind \(monitor.restoreMaxLagBytes 1\.0 MiB\)/);
  });

  test('restores within restoreMaxLagBytes: the next sync commit waits for everything before it', () => {
    const local = async(
      { state: 'streaming', syncState: 'async', flushLsn: '0/3000000', replyTimeMs: NOW - 2 },
      '0/3080000',
    );
    const cfg = buildConfig({ replication: { synchronous: true }, monitor: { restoreMaxLagBytes: MiB } });
    assert.equal(
      decideMonitor(input({ local, degraded: degradedRecord }), { lastConfirmedAt: 0 }, cfg, WANT).action
        .action,
      'restore',
    );
  });

  test('stays degraded while the standby is still catching up (not streaming)', () => {
    const local = async({ state: 'catchup', syncState: 'async', flushLsn: '0/1000000', replyTimeMs: NOW });
    const d = decideMonitor(
      input({ local, degraded: degradedRecord }),
      { lastConfirmedAt: 0 },
      syncCfg,
      WANT,
    );
    assert.equal(d.action.action, 'none');
    assert.match(d.action.reason, /db2 is catchup/);
  });

  test('stays degraded for a cut-off standby whose stale row looks caught up but has not replied since the switch', () => {
    const local = async({
      state: 'streaming',
      syncState: 'async',
      flushLsn: '0/3000000',
      replyTimeMs: NOW - 20_000,
    });
    const d = decideMonitor(
      input({ local, degraded: degradedRecord }),
      { lastConfirmedAt: 0 },
      syncCfg,
      WANT,
    );
    assert.equal(d.action.action, 'none');
    assert.match(d.action.reason, /has not replied since the switch/);
  });

  test('removes a stale record once sync mode is in force and confirmed', () => {
    const d = decideMonitor(input({ degraded: degradedRecord }), { lastConfirmedAt: 0 }, syncCfg, WANT);
    assert.equal(d.action.action, 'clear-record');
  });

  test('degrades again when the record exists but the switch to async did not happen', () => {
    const local = primary({ standby: undefined, oldestSyncRepWaitMs: 1500 });
    const d = decideMonitor(
      input({ local, degraded: degradedRecord }),
      { lastConfirmedAt: NOW },
      syncCfg,
      WANT,
    );
    assert.equal(d.action.action, 'degrade');
  });
});

describe('monitor: fencing', () => {
  test('fences a primary whose peer was promoted on a newer timeline', () => {
    const d = decideMonitor(
      input({ peer: { inRecovery: false, readOnly: false, timeline: 2 } }),
      { lastConfirmedAt: NOW },
      syncCfg,
      WANT,
    );
    assert.deepEqual(d.action, {
      action: 'fence',
      reason:
        "db2 is a primary on timeline 2, newer than db1's 1: db2 was promoted, so db1 is a superseded old primary",
    });
  });

  test('fences before degrading: a superseded primary must not go on taking writes asynchronously', () => {
    const local = primary({ standby: undefined, oldestSyncRepWaitMs: 5000 });
    const d = decideMonitor(
      input({ local, peer: { inRecovery: false, readOnly: false, timeline: 2 } }),
      { lastConfirmedAt: 0 },
      syncCfg,
      WANT,
    );
    assert.equal(d.action.action, 'fence');
  });

  test('does nothing when the peer is unreachable', () => {
    const d = decideMonitor(input({ peer: undefined }), { lastConfirmedAt: NOW }, buildConfig(), WANT);
    assert.equal(d.action.action, 'none');
  });

  test('does nothing when the peer is a standby or on the same timeline', () => {
    for (const peer of [
      { inRecovery: true, readOnly: true, timeline: 2 },
      { inRecovery: false, readOnly: false, timeline: 1 },
    ]) {
      assert.equal(
        decideMonitor(input({ peer }), { lastConfirmedAt: NOW }, buildConfig(), WANT).action.action,
        'none',
      );
    }
  });

  test('does nothing when the local server does not answer (hung or down)', () => {
    const d = decideMonitor(
      input({ local: undefined, peer: { inRecovery: false, readOnly: false, timeline: 2 } }),
      { lastConfirmedAt: NOW - 5000 },
      syncCfg,
      WANT,
    );
    assert.deepEqual(d.action, { action: 'none', reason: "db1's PostgreSQL does not answer" });
    assert.deepEqual(d.memory, { lastConfirmedAt: NOW - 5000 });
  });
});

describe('monitor: estimates and records', () => {
  test('the missing time of a gone standby is the longer of the clock and the oldest wait', () => {
    assert.equal(
      estimateMissingMs(primary({ standby: undefined, oldestSyncRepWaitMs: 700 }), NOW - 100, NOW),
      700,
    );
    assert.equal(estimateMissingMs(primary({ standby: undefined }), NOW - 400, NOW), 400);
  });

  test('reads degraded.json, and counts an unreadable one as degraded', () => {
    assert.equal(parseDegradedRecord(undefined), undefined);
    assert.deepEqual(parseDegradedRecord(JSON.stringify(degradedRecord)), degradedRecord);
    assert.equal(parseDegradedRecord('{not json')?.reason, 'unreadable record');
  });
});

/** A server that never answers: every call stays pending. */
class HangingPostgres implements Postgres {
  queryLocal<T>(): Promise<T[]> {
    return new Promise(() => undefined);
  }
  execLocal(): Promise<void> {
    return new Promise(() => undefined);
  }
  queryPeer<T>(): Promise<T[]> {
    return new Promise(() => undefined);
  }
}

describe('monitor: probes never block', () => {
  test('a hung local query counts as no answer after monitor.queryTimeoutMs', async () => {
    const cfg = buildConfig({ replication: { synchronous: true }, monitor: { queryTimeoutMs: 100 } });
    const { ctx } = commandContext({ config: cfg });
    const hung = { ...ctx, ports: { ...ctx.ports, pg: new HangingPostgres() } };
    assert.equal(await probeLocal(hung), undefined);
  });

  test('a hung peer counts as no answer', async () => {
    const cfg = buildConfig({ monitor: { peerTimeoutMs: 100 } });
    const { ctx } = commandContext({ config: cfg });
    await ctx.secrets.write('replication', 'pw-secret');
    const hung = { ...ctx, ports: { ...ctx.ports, pg: new HangingPostgres() } };
    assert.equal(await probePeer(hung), undefined);
  });

  test('withTimeout turns a rejection into no answer', async () => {
    const rejected = await withTimeout(Promise.reject<number>(new Error('boom')), 1000);
    assert.equal(rejected, undefined);
    assert.equal(await withTimeout(Promise.resolve(3), 1000), 3);
  });

  test('one loop with a gone standby for longer than the bound switches to async and writes degraded.json', async () => {
    const { ctx, pg, files, reporter } = commandContext({ config: syncCfg });
    pg.answer(
      /oldest_sync_rep_wait_ms/,
      [
        {
          in_recovery: false,
          read_only: false,
          synchronous_standby_names: WANT,
          timeline: 1,
          current_lsn: '0/5000000',
          oldest_sync_rep_wait_ms: 1200,
          standby: null,
          now_ms: NOW,
        },
      ],
      'local',
    );
    pg.answer(/SELECT pg_current_wal_lsn\(\)::text AS lsn/, [{ lsn: '0/5000100' }], 'local');
    await runMonitor(ctx, { maxLoops: 1 });
    const alter = pg.calls.find((c) => c.method === 'execLocal');
    assert.ok(alter);
    assert.match(alter.sql, /ALTER SYSTEM SET synchronous_standby_names = '';\nSELECT pg_reload_conf\(\);/);
    const record = JSON.parse(
      (await files.readTextIfExists('/var/opt/chef-ha/degraded.json')) ?? '{}',
    ) as DegradedRecord;
    assert.equal(record.lsn, '0/5000100');
    assert.equal(record.standby, 'db2');
    assert.ok(reporter.of('event').some((e) => e.data['event'] === 'degrade'));
  });
});

describe('monitor: the peer probe', () => {
  test('runs every monitor.peerIntervalMs, not every loop (each one is a TCP connection with SCRAM)', async () => {
    const { ctx, pg } = commandContext({ config: syncCfg });
    await ctx.secrets.write('replication', 'secret');
    pg.answer(
      /oldest_sync_rep_wait_ms/,
      [
        {
          in_recovery: true,
          read_only: false,
          synchronous_standby_names: '',
          timeline: 1,
          current_lsn: null,
          oldest_sync_rep_wait_ms: null,
          standby: null,
          now_ms: NOW,
        },
      ],
      'local',
    );
    pg.answer(/pg_is_in_recovery/, [{ in_recovery: false, read_only: false, timeline: 1 }], 'peer');
    // 11 loops of 200 ms on the fixed clock: 0 .. 2000 ms; a probe at 0, 600, 1200, 1800
    await runMonitor(ctx, { maxLoops: 11 });
    assert.equal(syncCfg.monitor.loopMs, 200);
    assert.equal(syncCfg.monitor.peerIntervalMs, 500);
    assert.equal(pg.calls.filter((c) => c.method === 'queryPeer').length, 4);
  });
});

describe('monitor: a failing action', () => {
  test('is tried again every loop and reported once', async () => {
    const { ctx, pg, reporter } = commandContext({ config: syncCfg });
    pg.answer(
      /oldest_sync_rep_wait_ms/,
      [
        {
          in_recovery: false,
          read_only: false,
          synchronous_standby_names: WANT,
          timeline: 1,
          current_lsn: '0/5000000',
          oldest_sync_rep_wait_ms: 1200,
          standby: null,
          now_ms: NOW,
        },
      ],
      'local',
    );
    pg.fail(/ALTER SYSTEM/, 'ERROR:  could not open file "postgresql.auto.conf": Permission denied', 'local');
    await runMonitor(ctx, { maxLoops: 3 });
    assert.equal(pg.calls.filter((c) => c.method === 'execLocal').length, 3);
    const errors = reporter.of('event').filter((e) => e.data['event'] === 'error');
    assert.equal(errors.length, 1);
    assert.match(errors[0]?.text ?? '', /degrade failed \(trying again every loop\): .*Permission denied/);
  });
});

describe('guard', () => {
  const base: GuardFacts = {
    fence: { running: false, inRecovery: undefined, standbySignal: false, recoveryConf: false },
    startsReadOnly: false,
    checkpointTimeline: 1,
    peer: { inRecovery: false, readOnly: false, timeline: 2 },
  };
  const cfg = buildConfig();

  test('fences an old primary whose peer is a primary on a newer timeline than its last checkpoint', () => {
    const d = decideGuard(base, cfg);
    assert.equal(d.action, 'fence');
    assert.match(d.reason, /db2 is a primary on timeline 2, newer than db1's last checkpoint timeline 1/);
  });

  test('writes the standby file for a fenced node that lost it', () => {
    const d = decideGuard(
      { ...base, peer: undefined, fence: { ...base.fence, fenced: { at: 'x', reason: 'failover' } } },
      cfg,
    );
    assert.equal(d.action, 'fence');
  });

  test('lets a standby (standby.signal present) start', () => {
    assert.equal(decideGuard({ ...base, startsReadOnly: true }, cfg).action, 'allow');
  });

  test('lets a primary start when its peer is a standby, or unreachable, or not newer', () => {
    assert.equal(
      decideGuard({ ...base, peer: { inRecovery: true, readOnly: true, timeline: 1 } }, cfg).action,
      'allow',
    );
    assert.equal(decideGuard({ ...base, peer: undefined }, cfg).action, 'allow');
    assert.equal(decideGuard({ ...base, checkpointTimeline: 2 }, cfg).action, 'allow');
  });

  test('starts read-only when the peer is a primary and the own timeline cannot be read', () => {
    assert.equal(decideGuard({ ...base, checkpointTimeline: undefined }, cfg).action, 'fence');
  });

  test('reads the checkpoint timeline from pg_controldata', () => {
    const out =
      "pg_control version number:            1300\nLatest checkpoint's TimeLineID:       3\nLatest checkpoint's PrevTimeLineID:   2\n";
    assert.equal(parseCheckpointTimeline(out), 3);
    assert.equal(parseCheckpointTimeline('nothing'), undefined);
  });
});

describe('pre-start guard: systemd drop-in and hook', () => {
  const dropIn =
    '[Service]\nExecStartPre=+/opt/chef-ha/bin/chef-ha-ctl --config /etc/chef-ha/chef-ha.json guard\n';
  const rendered: Rendered = { recipeOverride: 'r', chefHaConf: 'c', hbaBlock: 'h', guardDropIn: dropIn };

  test('installs the drop-in and reloads systemd where pg_ctlcluster and systemd are', () => {
    const steps = planGuardDropInSteps(localFacts({ systemdUnitDirExists: true }), buildConfig(), rendered);
    assert.deepEqual(
      steps.map((s) => [s.id, s.done]),
      [
        ['install-guard-drop-in', undefined],
        ['systemd-daemon-reload', undefined],
      ],
    );
    const write = steps[0];
    assert.ok(write?.kind === 'write');
    assert.equal(write.path, '/etc/systemd/system/postgresql@15-main.service.d/chef-ha-guard.conf');
  });

  test('finds a current drop-in done', () => {
    const steps = planGuardDropInSteps(
      localFacts({ systemdUnitDirExists: true, files: { guardDropIn: dropIn } }),
      buildConfig(),
      rendered,
    );
    assert.deepEqual(
      steps.map((s) => s.done),
      ['the drop-in is current', 'the drop-in did not change'],
    );
  });

  test('plans no drop-in without systemd, or with the pg_ctl manager', () => {
    assert.deepEqual(planGuardDropInSteps(localFacts(), buildConfig(), rendered), []);
    assert.deepEqual(
      planGuardDropInSteps(
        localFacts({ systemdUnitDirExists: true }),
        buildConfig({ postgres: { manager: 'pg_ctl' } }),
        rendered,
      ),
      [],
    );
  });

  test('runs postgres.preStartHook before chef-ha starts PostgreSQL, and not before it stops it', () => {
    const cfg = buildConfig({ postgres: { manager: 'pg_ctl', preStartHook: ['/usr/bin/guard', '--x'] } });
    const start = serviceStep(cfg, 'start', 'start-postgresql', 'start');
    assert.ok(start.kind === 'run');
    assert.deepEqual(start.before, { argv: ['/usr/bin/guard', '--x'], timeoutMs: 60_000 });
    const stop = serviceStep(cfg, 'stop', 'stop-postgresql', 'stop');
    assert.ok(stop.kind === 'run');
    assert.equal(stop.before, undefined);
  });

  test('a failing hook stops the start: the start command never runs', async () => {
    const cfg = buildConfig({ postgres: { manager: 'pg_ctl', preStartHook: ['/usr/bin/guard'] } });
    const { ctx, shell } = commandContext({ config: cfg });
    shell.on(/guard/, { exitCode: 1, stderr: 'guard: cannot write standby.signal' });
    const plan: Plan = {
      command: 'fence',
      summary: 'start',
      steps: [serviceStep(cfg, 'start', 'start-postgresql', 'start')],
    };
    await assert.rejects(executePlan(ctx, plan, { dryRun: false }), /the pre-start hook exited 1/);
    assert.deepEqual(
      shell.calls.map((c) => c.argv[0]),
      ['/usr/bin/guard'],
    );
  });
});
