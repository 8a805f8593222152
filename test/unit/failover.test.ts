import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PairFacts, PeerFacts } from '../../src/core/facts.js';
import { decideFailover, type FailoverDecision } from '../../src/commands/failover/decide.js';
import { MiB, standbyConfig } from '../fakes/config.js';
import {
  GATHERED_AT,
  PRIMARY_LSN,
  localFacts,
  localPgDown,
  lsnMinus,
  pairFacts,
  peerFacts,
  recipe,
  server,
  type LocalOverrides,
} from '../fakes/facts.js';
import type { Config } from '../../src/core/config.js';
import { type Step, stepIds } from '../../src/core/plan.js';
import { planFailover } from '../../src/commands/failover/plan.js';

// decideFailover (src/commands/failover/decide.ts)

// Failover runs on db2, the standby; db1 is the (old) master.
const cfg = standbyConfig();
const cfgSsh = standbyConfig({ peer: { ssh: { target: 'root@db1' } } });
const cfgSync = standbyConfig({ replication: { synchronous: true } });

/**
 * db2 answers as a writable primary itself: a failover that promoted it and was interrupted (its marker
 * is still there), unless the overrides say otherwise.
 */
function promotedLocal(peer: PeerFacts, local: LocalOverrides = {}, timeline: number | null = 2): PairFacts {
  return {
    local: localFacts({
      recipe: recipe.override(),
      secretPresent: true,
      failoverInProgress: true,
      ...local,
      pg: { server: server.primary({ timeline }) },
    }),
    peer,
    gatheredAt: GATHERED_AT,
  };
}

/** db2 is a standby `lagBytes` behind db1, which answers read-only (fenced over SQL, not in recovery). */
function standbyOfReadOnlyMaster(lagBytes: number): PairFacts {
  const facts = pairFacts.primaryWithStreamingStandby({ lagBytes });
  return { ...facts, peer: peerFacts.primary({ readOnlyDefault: true }) };
}

describe('decideFailover refuses', () => {
  const fenced = { at: '2026-01-15T11:00:00.000Z', reason: 'failover to db1' };
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly force: boolean;
    readonly reason: string;
    readonly override?: string;
    readonly hint?: RegExp;
  }[] = [
    {
      scenario: "when this node's PostgreSQL is not running",
      facts: {
        ...pairFacts.standbyWithDeadMaster(),
        local: localFacts({ pg: localPgDown('socket missing') }),
      },
      force: true,
      reason: "db2's PostgreSQL is not running (socket missing), so there is nothing to promote",
      hint: /^start it \(it comes up as a standby\) and run failover again$/,
    },
    {
      scenario: 'when this node answers without server facts and without an error',
      facts: {
        ...pairFacts.standbyWithDeadMaster(),
        local: {
          ...localFacts(),
          pg: { running: true, settings: {}, replicationRoleExists: false, slots: [], chefData: {} },
        },
      },
      force: false,
      reason: "db2's PostgreSQL is not running (no answer), so there is nothing to promote",
      hint: /start it/,
    },
    {
      scenario: 'when both nodes answer as writable primaries, even with --force',
      facts: promotedLocal(peerFacts.primary()),
      force: true,
      reason: 'db2 and db1 both answer as writable primaries; run `chef-ha-ctl status` and fence one of them',
    },
    {
      scenario: 'when this node is a fenced old primary',
      facts: promotedLocal(peerFacts.unreachable(), { fenced }),
      force: true,
      reason: 'db2 is not a standby: it is a fenced old primary; failover runs on the standby',
      hint: /^run failover on db1, and `chef-ha-ctl rejoin` here afterwards$/,
    },
    {
      scenario: 'when this node is the primary and the peer follows it',
      facts: promotedLocal(peerFacts.standby(), { failoverInProgress: false }),
      force: true,
      reason: 'db2 is not a standby: it is the primary and db1 follows it; failover runs on the standby',
      hint: /^run it on db1 when db2 has failed; to swap roles on purpose, use `chef-ha-ctl switchover`$/,
    },
    {
      scenario: 'when this node is a primary that no failover promoted (the peer does not answer)',
      facts: promotedLocal(peerFacts.unreachable(), { failoverInProgress: false }),
      force: true,
      reason: 'db2 is not a standby: it is the primary; failover runs on the standby',
      hint: /^run it on db1 when db2 has failed/,
    },
    {
      scenario: 'when the master is healthy, saying how far behind the candidate is',
      facts: pairFacts.primaryWithStreamingStandby({ lagBytes: 48 * MiB }),
      force: false,
      reason:
        'db1 is healthy: it answers as a writable primary at 10.0.0.1:5432 (db2 is 48.0 MiB behind); a failover now would throw away a working master',
      override: '--force',
      hint: /switchover.*--force/,
    },
    {
      scenario: 'when candidate lags beyond maxLagBytes',
      facts: standbyOfReadOnlyMaster(48 * MiB),
      force: false,
      reason:
        'db2 is 48.0 MiB behind db1 (failover.maxLagBytes 16.0 MiB); promoting now would lose those writes',
      override: '--force',
      hint: /^wait for db2 to catch up \(chef-ha-ctl status\), or re-run with --force to accept losing them$/,
    },
  ];
  for (const row of table) {
    test(`refuses failover ${row.scenario}`, () => {
      const decision = decideFailover(row.facts, cfg, { force: row.force });
      assert.equal(decision.action, 'refuse');
      assert.ok(decision.action === 'refuse');
      assert.equal(decision.reason, row.reason);
      assert.equal(decision.override, row.override);
      if (row.hint) {
        assert.match(decision.hint ?? '', row.hint);
      } else {
        assert.equal(decision.hint, undefined);
      }
    });
  }

  test('leaves the lag out of the healthy-master refusal when this node has no WAL position', () => {
    const facts = pairFacts.primaryWithStreamingStandby();
    const local = localFacts({
      pg: { server: server.standby({ receiveLsn: null, replayLsn: null }) },
    });
    const decision = decideFailover({ ...facts, local }, cfg, { force: false });
    assert.ok(decision.action === 'refuse');
    assert.equal(
      decision.reason,
      'db1 is healthy: it answers as a writable primary at 10.0.0.1:5432; a failover now would throw away a working master',
    );
  });

  test('names the configured peer port in the healthy-master refusal', () => {
    const decision = decideFailover(
      pairFacts.primaryWithStreamingStandby(),
      standbyConfig({ peer: { postgresPort: 6432 } }),
      { force: false },
    );
    assert.ok(decision.action === 'refuse');
    assert.match(decision.reason, /at 10\.0\.0\.1:6432 \(db2 is 0 B behind\)/);
  });
});

describe('decideFailover with --force', () => {
  test('promotes although the master answers as a writable primary, fencing it over SQL', () => {
    const decision = decideFailover(pairFacts.primaryWithStreamingStandby({ lagBytes: 4 * MiB }), cfg, {
      force: true,
    });
    assert.equal(decision.action, 'promote');
    assert.ok(decision.action === 'promote');
    assert.equal(decision.candidate, 'db2');
    assert.equal(decision.fence, 'sql');
    assert.equal(decision.lossNote, 'db2 is 4.0 MiB behind db1');
  });

  test('promotes although the candidate lags beyond maxLagBytes, and says how much may be lost', () => {
    const decision = decideFailover(standbyOfReadOnlyMaster(48 * MiB), cfg, { force: true });
    assert.deepEqual(decision, {
      action: 'promote',
      candidate: 'db2',
      reason: 'db1 is not a writable primary',
      lossNote: 'db2 is 48.0 MiB behind db1',
      fence: 'sql',
    } satisfies FailoverDecision);
  });
});

describe('decideFailover promotes', () => {
  test('when the old master is read-only and the candidate is within maxLagBytes', () => {
    const decision = decideFailover(standbyOfReadOnlyMaster(16 * MiB), cfg, { force: false });
    assert.deepEqual(decision, {
      action: 'promote',
      candidate: 'db2',
      reason: 'db1 is not a writable primary',
      lossNote: 'db2 is 16.0 MiB behind db1',
      fence: 'sql',
    } satisfies FailoverDecision);
  });

  test('when the master does not answer, noting async loss and the age of its last message', () => {
    const decision = decideFailover(pairFacts.standbyWithDeadMaster(), cfg, { force: false });
    assert.deepEqual(decision, {
      action: 'promote',
      candidate: 'db2',
      reason: "db1's PostgreSQL does not answer (connect ECONNREFUSED 10.0.0.1:5432)",
      lossNote:
        'db1 cannot be asked its position; db2 has received WAL up to 1/0 and replayed up to 1/0, last message from db1 12.3s ago; in asynchronous mode commits of the last moments before the fault may be lost',
      fence: 'none',
    } satisfies FailoverDecision);
  });

  test('when the master does not answer in synchronous mode, noting that acknowledged commits are safe', () => {
    const decision = decideFailover(pairFacts.standbyWithDeadMaster({ lastMessageAgeS: 3 }), cfgSync, {
      force: false,
    });
    assert.ok(decision.action === 'promote');
    assert.equal(
      decision.lossNote,
      'db1 cannot be asked its position; db2 has received WAL up to 1/0 and replayed up to 1/0, last message from db1 3.0s ago; in synchronous mode every acknowledged commit reached this node, unless db1 stayed up after its last message (cut off rather than dead): its monitor then degraded it to asynchronous after monitor.degradeAfterMs (1000 ms) and commits acknowledged after that are not here',
    );
  });

  test('without a WAL receiver, leaving out the age of the last message', () => {
    const decision = decideFailover(pairFacts.standbyWithDeadMaster({ lastMessageAgeS: null }), cfg, {
      force: false,
    });
    assert.ok(decision.action === 'promote');
    assert.doesNotMatch(decision.lossNote, /last message/);
  });

  test('with the receive position when nothing was replayed, and "?" when nothing was received', () => {
    const base = pairFacts.standbyWithDeadMaster();
    const receivedOnly = localFacts({
      pg: {
        server: server.standby({ receiveLsn: lsnMinus(PRIMARY_LSN, 16), replayLsn: null, walReceiver: null }),
      },
    });
    const d1 = decideFailover({ ...base, local: receivedOnly }, cfg, { force: false });
    assert.ok(d1.action === 'promote');
    assert.match(d1.lossNote, /received WAL up to 0\/FFFFFFF0 and replayed up to 0\/FFFFFFF0;/);
    const nothing = localFacts({
      pg: { server: server.standby({ receiveLsn: null, replayLsn: null, walReceiver: null }) },
    });
    const d2 = decideFailover({ ...base, local: nothing }, cfg, { force: false });
    assert.ok(d2.action === 'promote');
    assert.match(d2.lossNote, /received WAL up to \? and replayed up to \?;/);
  });

  test('says "unreachable" when the peer facts carry no error', () => {
    const facts = pairFacts.standbyWithDeadMaster();
    const decision = decideFailover({ ...facts, peer: { reachable: false, slots: [] } }, cfg, {
      force: false,
    });
    assert.ok(decision.action === 'promote');
    assert.equal(decision.reason, "db1's PostgreSQL does not answer (unreachable)");
  });

  test('when the peer is reachable but itself a standby (it cannot be asked its position)', () => {
    const facts = { ...pairFacts.standbyWithDeadMaster(), peer: peerFacts.standby() };
    const decision = decideFailover(facts, cfg, { force: false });
    assert.ok(decision.action === 'promote');
    assert.equal(decision.reason, 'db1 is not a writable primary');
    assert.match(decision.lossNote, /^db1 cannot be asked its position;/);
    assert.equal(decision.fence, 'sql');
  });
});

describe('decideFailover completes an interrupted failover', () => {
  test('when this node is already promoted and the old master does not answer', () => {
    assert.deepEqual(decideFailover(promotedLocal(peerFacts.unreachable()), cfg, { force: false }), {
      action: 'complete',
      candidate: 'db2',
      reason: 'db2 is already promoted (timeline 2); finishing the remaining steps',
      fence: 'none',
    } satisfies FailoverDecision);
  });

  test('when this node is already promoted and the old master answers read-only', () => {
    const decision = decideFailover(promotedLocal(peerFacts.primary({ readOnlyDefault: true })), cfg, {
      force: false,
    });
    assert.ok(decision.action === 'complete');
    assert.equal(decision.fence, 'sql');
  });

  test('even when the old master now follows it', () => {
    const decision = decideFailover(promotedLocal(peerFacts.standby()), cfg, { force: false });
    assert.ok(decision.action === 'complete');
    assert.equal(decision.fence, 'sql');
  });

  test('with "?" for an unknown timeline', () => {
    const decision = decideFailover(promotedLocal(peerFacts.unreachable(), {}, null), cfg, { force: false });
    assert.ok(decision.action === 'complete');
    assert.equal(decision.reason, 'db2 is already promoted (timeline ?); finishing the remaining steps');
  });
});

describe('decideFailover picks the fence', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly config: typeof cfg;
    readonly fence: 'sql' | 'ssh' | 'none';
  }[] = [
    {
      scenario: 'sql when the old master answers',
      facts: standbyOfReadOnlyMaster(0),
      config: cfgSsh,
      fence: 'sql',
    },
    {
      scenario: 'ssh when it does not answer and peer.ssh is set',
      facts: pairFacts.standbyWithDeadMaster(),
      config: cfgSsh,
      fence: 'ssh',
    },
    {
      scenario: 'none when it does not answer and there is no peer.ssh',
      facts: pairFacts.standbyWithDeadMaster(),
      config: cfg,
      fence: 'none',
    },
    {
      scenario: 'ssh for a completed promotion whose old master is down',
      facts: promotedLocal(peerFacts.unreachable()),
      config: cfgSsh,
      fence: 'ssh',
    },
  ];
  for (const row of table) {
    test(`fences over ${row.scenario}`, () => {
      const decision = decideFailover(row.facts, row.config, { force: false });
      assert.ok(decision.action !== 'refuse', JSON.stringify(decision));
      assert.equal(decision.fence, row.fence);
    });
  }
});

// planFailover (src/commands/failover/plan.ts)

const PRIMARY_CONF = '# chef-ha.conf for db2 as a primary\n';

type Actionable = Extract<FailoverDecision, { action: 'promote' | 'complete' }>;

function decide(facts: PairFacts, config: Config = cfg, force = false): Actionable {
  const decision = decideFailover(facts, config, { force });
  assert.ok(decision.action !== 'refuse', `expected a decision to act, got: ${decision.reason}`);
  return decision;
}

function plan(facts: PairFacts, config: Config = cfg, force = false): ReturnType<typeof planFailover> {
  return planFailover({ facts, decision: decide(facts, config, force), config, primaryConf: PRIMARY_CONF });
}

function step(steps: readonly Step[], id: string): Step {
  const found = steps.find((s) => s.id === id);
  assert.ok(found, `no step ${id}`);
  return found;
}

function decideForced(facts: PairFacts): Extract<FailoverDecision, { action: 'promote' | 'complete' }> {
  const d = decideFailover(facts, standbyConfig(), { force: true });
  assert.ok(d.action === 'promote');
  return d;
}

// The dead master's host is fenced after the promotion (its PostgreSQL takes no writes while it does
// not answer); a master whose PostgreSQL answers is fenced first (see below).
const ORDER = [
  'mark-failover-started',
  'promote',
  'wait-writable',
  'refresh-health',
  'fence-old-master',
  'write-primary-settings',
  'clear-inherited-settings',
  'create-slot-for-old-master',
  'record-failover',
  'restart-chef-services',
  'reindex',
  'mark-failover-finished',
];

describe('planFailover', () => {
  test('promotes first and fences a master whose PostgreSQL does not answer afterwards', () => {
    const p = plan(pairFacts.standbyWithDeadMaster());
    assert.deepEqual(stepIds(p), ORDER);
    assert.equal(p.command, 'failover');
    assert.equal(
      p.summary,
      "db1's PostgreSQL does not answer (connect ECONNREFUSED 10.0.0.1:5432): promote db2",
    );
  });

  test('fences a master whose PostgreSQL answers before promoting', () => {
    const facts = pairFacts.primaryWithStreamingStandby({ lagBytes: 0 });
    const ids = stepIds(
      planFailover({
        facts,
        decision: decideForced(facts),
        config: standbyConfig(),
        primaryConf: '# conf\n',
      }),
    );
    assert.ok(ids.indexOf('fence-old-master') < ids.indexOf('promote'));
    // and waits until the old master's health endpoint has seen the fence, so that the two nodes never
    // both answer 200 on /primary (its snapshot is up to health.refreshMs old)
    assert.ok(ids.indexOf('fence-old-master') < ids.indexOf('refresh-old-master-health'));
    assert.ok(ids.indexOf('refresh-old-master-health') < ids.indexOf('wait-old-master-health'));
    assert.ok(ids.indexOf('wait-old-master-health') < ids.indexOf('promote'));
  });

  test('bounds the wait for the old master health endpoint by one refresh and goes on at its end', () => {
    const facts = pairFacts.primaryWithStreamingStandby({ lagBytes: 0 });
    const config = standbyConfig();
    const wait = step(
      planFailover({ facts, decision: decideForced(facts), config, primaryConf: '# conf\n' }).steps,
      'wait-old-master-health',
    );
    assert.ok(wait.kind === 'wait');
    assert.deepEqual(wait.until, { name: 'health-not-primary', on: 'peer' });
    assert.equal(wait.timeoutMs, config.health.refreshMs + config.health.probeTimeoutMs);
    assert.equal(wait.onTimeout, 'continue');
    // nothing to wait for when the old master is already read-only, or does not answer at all
    const readOnly = { ...facts, peer: peerFacts.primary({ readOnlyDefault: true }) };
    assert.ok(!stepIds(plan(readOnly)).includes('wait-old-master-health'));
    assert.ok(!stepIds(plan(pairFacts.standbyWithDeadMaster())).includes('wait-old-master-health'));
  });

  test('skips the erchef restart when its sessions on this node survive the promotion', () => {
    const base = pairFacts.standbyWithDeadMaster();
    const facts = { ...base, local: { ...base.local, pg: { ...base.local.pg, chefSessions: 3 } } };
    assert.match(step(plan(facts).steps, 'restart-chef-services').done ?? '', /erchef holds 3 sessions/);
    assert.equal(step(plan(base).steps, 'restart-chef-services').done, undefined);
  });

  test('marks promote, and only promote, irreversible', () => {
    const p = plan(pairFacts.standbyWithDeadMaster());
    assert.deepEqual(
      p.steps.filter((s) => s.irreversible).map((s) => s.id),
      ['promote'],
    );
  });

  test('promotes with pg_promote() on PostgreSQL 12 and later, waiting promoteTimeoutMs', () => {
    const config = standbyConfig({ failover: { promoteTimeoutMs: 12_500 } });
    const promote = step(plan(pairFacts.standbyWithDeadMaster(), config).steps, 'promote');
    assert.deepEqual(promote, {
      kind: 'sql',
      id: 'promote',
      title: 'promote db2',
      on: 'local',
      database: 'postgres',
      text: 'SELECT pg_promote(true, 13);',
      irreversible: true,
      done: undefined,
    });
    const wait = step(plan(pairFacts.standbyWithDeadMaster(), config).steps, 'wait-writable');
    assert.ok(wait.kind === 'wait');
    assert.deepEqual(wait.until, { name: 'local-writable' });
    assert.equal(wait.timeoutMs, 12_500);
  });

  test('promotes with the service manager before PostgreSQL 12', () => {
    for (const version of ['9.2', '11']) {
      const promote = step(
        plan(pairFacts.standbyWithDeadMaster(), standbyConfig({ postgres: { version } })).steps,
        'promote',
      );
      assert.ok(promote.kind === 'run');
      assert.deepEqual(promote.argv, ['pg_ctlcluster', version, 'main', 'promote']);
      assert.equal(promote.irreversible, true);
    }
  });

  test('marks the service-manager promote done too when completing an earlier promotion (PostgreSQL 11)', () => {
    const facts: PairFacts = {
      local: localFacts({ failoverInProgress: true, pg: { server: server.primary({ timeline: 2 }) } }),
      peer: peerFacts.unreachable(),
      gatheredAt: GATHERED_AT,
    };
    const promote = step(plan(facts, standbyConfig({ postgres: { version: '11' } })).steps, 'promote');
    assert.ok(promote.kind === 'run');
    assert.equal(promote.done, 'already promoted');
    assert.equal(promote.irreversible, true);
  });

  test('marks promote done when the decision is to complete an earlier promotion', () => {
    const facts: PairFacts = {
      local: localFacts({
        recipe: recipe.override(),
        failoverInProgress: true,
        pg: { server: server.primary({ timeline: 2 }) },
      }),
      peer: peerFacts.unreachable(),
      gatheredAt: GATHERED_AT,
    };
    const p = plan(facts);
    assert.equal(step(p.steps, 'promote').done, 'already promoted');
    assert.equal(
      p.summary,
      'db2 is already promoted (timeline 2); finishing the remaining steps: finish the failover to db2',
    );
    const notDone = p.steps.filter((s) => !s.done).map((s) => s.id);
    assert.equal(step(p.steps, 'mark-failover-started').done, 'a failover to this node is in progress');
    assert.deepEqual(notDone, [
      'wait-writable',
      'refresh-health',
      'write-primary-settings',
      'clear-inherited-settings',
      'create-slot-for-old-master',
      'record-failover',
      'restart-chef-services',
      'reindex',
      'mark-failover-finished',
    ]);
  });

  test('brackets the failover with a marker in the state directory, so only it can be finished by a re-run', () => {
    const p = plan(pairFacts.standbyWithDeadMaster());
    const started = step(p.steps, 'mark-failover-started');
    assert.ok(started.kind === 'action');
    assert.equal(started.action, 'record-state');
    assert.deepEqual(started.args, {
      path: '/var/opt/chef-ha/failover-in-progress',
      data: { oldPrimary: 'db1' },
    });
    assert.equal(started.done, undefined);
    const finished = step(p.steps, 'mark-failover-finished');
    assert.ok(finished.kind === 'remove');
    assert.equal(finished.path, '/var/opt/chef-ha/failover-in-progress');
  });

  test('fences a writable old master over SQL with its data directory and major', () => {
    const facts = pairFacts.primaryWithStreamingStandby();
    const fence = step(plan(facts, cfg, true).steps, 'fence-old-master');
    assert.deepEqual(fence, {
      kind: 'action',
      id: 'fence-old-master',
      title: 'fence db1 over SQL (read-only now; starts as a standby next time)',
      action: 'fence-peer-sql',
      args: { peerDataDir: '/var/lib/postgresql/15/main', peerMajor: '15' },
      done: undefined,
    });
  });

  test('marks the SQL fence done when the old master is already read-only', () => {
    const facts = {
      ...pairFacts.standbyWithDeadMaster(),
      peer: peerFacts.primary({ readOnlyDefault: true }),
    };
    assert.equal(step(plan(facts).steps, 'fence-old-master').done, 'db1 is already read-only');
    const inRecovery = { ...pairFacts.standbyWithDeadMaster(), peer: peerFacts.standby() };
    assert.equal(step(plan(inRecovery).steps, 'fence-old-master').done, 'db1 is already read-only');
  });

  test('fences an unreachable old master over ssh when peer.ssh is set', () => {
    const config = standbyConfig({ peer: { ssh: { target: 'root@db1' } } });
    const fence = step(plan(pairFacts.standbyWithDeadMaster(), config).steps, 'fence-old-master');
    assert.ok(fence.kind === 'action');
    assert.equal(fence.action, 'fence-peer-ssh');
    assert.deepEqual(fence.args, { reason: 'failover to db2' });
    assert.equal(fence.done, undefined);
  });

  test('cannot fence an unreachable old master without peer.ssh and says it must stay down', () => {
    const fence = step(plan(pairFacts.standbyWithDeadMaster()).steps, 'fence-old-master');
    assert.equal(
      fence.done,
      'no way to reach db1 (no answer from PostgreSQL, no peer.ssh): it must not be started before `chef-ha-ctl rejoin`',
    );
  });

  test('rewrites chef-ha.conf for the primary role unless it is current', () => {
    const facts = pairFacts.standbyWithDeadMaster();
    const write = step(plan(facts).steps, 'write-primary-settings');
    assert.ok(write.kind === 'write');
    assert.equal(write.path, '/etc/postgresql/15/main/conf.d/chef-ha.conf');
    assert.equal(write.content, PRIMARY_CONF);
    assert.equal(write.owner, 'postgres');
    assert.equal(write.done, undefined);
    const current = { ...facts, local: { ...facts.local, files: { chefHaConf: PRIMARY_CONF } } };
    assert.equal(step(plan(current).steps, 'write-primary-settings').done, 'chef-ha.conf is current');
  });

  test('creates the slot for the old master unless it exists', () => {
    const facts = pairFacts.standbyWithDeadMaster();
    const create = step(plan(facts).steps, 'create-slot-for-old-master');
    assert.ok(create.kind === 'sql');
    assert.match(create.text, /pg_create_physical_replication_slot\('chef_ha_db1'\)/);
    assert.equal(create.done, undefined);
    const withSlot = {
      ...facts,
      local: {
        ...facts.local,
        pg: { ...facts.local.pg, slots: [{ slot_name: 'chef_ha_db1', active: false }] },
      },
    };
    assert.equal(step(plan(withSlot).steps, 'create-slot-for-old-master').done, 'the slot exists');
  });

  test('clears inherited synchronous and read-only settings, records the event and restarts erchef', () => {
    const p = plan(pairFacts.standbyWithDeadMaster());
    const clear = step(p.steps, 'clear-inherited-settings');
    assert.ok(clear.kind === 'sql');
    assert.match(clear.text, /ALTER SYSTEM RESET synchronous_standby_names;/);
    assert.match(clear.text, /ALTER SYSTEM RESET default_transaction_read_only;/);
    const record = step(p.steps, 'record-failover');
    assert.ok(record.kind === 'action');
    assert.deepEqual(record.args, {
      path: '/var/opt/chef-ha/history.jsonl',
      append: true,
      data: { event: 'failover', newPrimary: 'db2', oldPrimary: 'db1', fence: 'none' },
    });
    const restart = step(p.steps, 'restart-chef-services');
    assert.ok(restart.kind === 'run');
    assert.deepEqual(restart.argv, ['/opt/chef-server/bin/chef-server-ctl', 'restart', 'erchef']);
    const reindex = step(p.steps, 'reindex');
    assert.ok(reindex.kind === 'run');
    assert.deepEqual(reindex.argv, ['/opt/chef-server/bin/chef-server-ctl', 'reindex']);
    assert.equal(reindex.timeoutMs, 600_000);
  });
});

describe('decideFailover with a degraded pair', () => {
  test('treats a synchronous pair whose master went asynchronous as asynchronous in the loss note', () => {
    const facts = pairFacts.primaryWithStreamingStandby({ lagBytes: 4 * MiB });
    const peer = facts.peer.server;
    assert.ok(peer);
    const degraded = { ...facts, peer: { ...facts.peer, server: { ...peer, synchronousStandbyNames: '' } } };
    const decision = decideFailover(degraded, cfgSync, { force: true });
    assert.ok(decision.action === 'promote');
    assert.equal(
      decision.lossNote,
      'db2 is 4.0 MiB behind db1; db1 is not synchronous (degraded or never switched on), so the pair is treated as asynchronous',
    );
  });
});
