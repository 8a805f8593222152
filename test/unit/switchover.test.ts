import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PairFacts } from '../../src/core/facts.js';
import { stepIds } from '../../src/core/plan.js';
import {
  decideSwitchover,
  planSwitchoverDemote,
  planSwitchoverPromote,
  type SwitchoverDecision,
  type SwitchoverFacts,
} from '../../src/commands/switchover/plan.js';
import {
  isCleanShutdown,
  parseControlData,
  parseHistory,
  parseRewindOutput,
  parseWaldump,
  walFileName,
  walFilesFrom,
} from '../../src/pg/controldata.js';
import { config as buildConfig, standbyConfig } from '../fakes/config.js';
import { GATHERED_AT, localFacts, pairFacts, peerFacts, recipe, server } from '../fakes/facts.js';

// db1 is the primary, db2 its streaming standby; ssh between them.
const ssh = { peer: { ssh: { target: 'root@db2' } } };
const cfg = buildConfig(ssh);
const cfgNoSsh = buildConfig();
const cfgStandby = standbyConfig({ peer: { ssh: { target: 'root@db1' } } });
const NOW = '2026-01-15T12:00:00.000Z';

const healthyFromPrimary = (): SwitchoverFacts => ({
  pair: pairFacts.primaryWithStreamingStandby({ local: 'primary' }),
});
const healthyFromStandby = (): SwitchoverFacts => ({ pair: pairFacts.primaryWithStreamingStandby() });

/** db1 stopped and fenced by an interrupted switchover to db2. */
function stoppedBySwitchover(peer: PairFacts['peer'], state = 'shut down'): SwitchoverFacts {
  return {
    pair: {
      local: localFacts({
        recipe: recipe.override(),
        secretPresent: true,
        fenced: { at: NOW, reason: 'switchover to db2' },
        dataDir: { standbySignal: true },
        pg: { running: false },
      }),
      peer,
      gatheredAt: GATHERED_AT,
    },
    control: parseControlData(
      `Database cluster state:               ${state}\nLatest checkpoint location:           0/5000028\nLatest checkpoint's TimeLineID:       1\n`,
    ),
  };
}

describe('decideSwitchover', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: SwitchoverFacts;
    readonly config?: typeof cfg;
    readonly to?: string;
    readonly expect: Partial<SwitchoverDecision> & { readonly action: SwitchoverDecision['action'] };
    readonly reason?: RegExp;
  }[] = [
    {
      scenario: 'on the primary of a healthy pair: demote it',
      facts: healthyFromPrimary(),
      expect: { action: 'demote', target: 'db2' },
    },
    {
      scenario: 'on the standby: hand the switchover to the primary over ssh',
      facts: healthyFromStandby(),
      config: cfgStandby,
      expect: { action: 'delegate', target: 'db2' },
    },
    {
      scenario: 'to the node that is already the primary: done',
      facts: healthyFromPrimary(),
      to: 'db1',
      expect: { action: 'done' },
      reason: /db1 is already the primary and db2 streams from it/,
    },
    {
      scenario: 'on the standby, to the primary: done',
      facts: healthyFromStandby(),
      config: cfgStandby,
      to: 'db1',
      expect: { action: 'done' },
    },
    {
      scenario: 'refuses when the standby does not stream',
      facts: { pair: pairFacts.primaryWithStreamingStandby({ local: 'primary', state: 'catchup' }) },
      expect: { action: 'refuse' },
      reason: /not healthy: db2 does not stream from db1/,
    },
    {
      scenario: 'refuses when the standby does not answer',
      facts: {
        pair: {
          ...pairFacts.primaryWithStreamingStandby({ local: 'primary' }),
          peer: peerFacts.unreachable(),
        },
      },
      expect: { action: 'refuse' },
      reason: /db2 does not answer/,
    },
    {
      scenario: 'refuses without peer.ssh (the standby is promoted by its own chef-ha-ctl)',
      facts: healthyFromPrimary(),
      config: cfgNoSsh,
      expect: { action: 'refuse' },
      reason: /peer.ssh is not configured/,
    },
    {
      scenario: 'refuses a target that is not in the pair',
      facts: healthyFromPrimary(),
      to: 'db9',
      expect: { action: 'refuse' },
      reason: /--to db9 names neither/,
    },
    {
      scenario: 'resumes an interrupted switchover that stopped this node cleanly',
      facts: stoppedBySwitchover(peerFacts.standby()),
      expect: { action: 'demote', target: 'db2', resumed: true },
    },
    {
      scenario: 'refuses to resume when this node did not shut down cleanly',
      facts: stoppedBySwitchover(peerFacts.standby(), 'in production'),
      expect: { action: 'refuse' },
      reason: /did not shut down cleanly/,
    },
    {
      scenario: 'only the rejoin is left once the peer is promoted',
      facts: stoppedBySwitchover(peerFacts.primary({ timeline: 2 })),
      expect: { action: 'rejoin', target: 'db2' },
    },
    {
      scenario: 'refuses with two writable primaries',
      facts: { pair: { ...healthyFromPrimary().pair, peer: peerFacts.primary() } },
      expect: { action: 'refuse' },
      reason: /both answer as writable primaries/,
    },
  ];
  for (const row of table) {
    test(row.scenario, () => {
      const d = decideSwitchover(row.facts, row.config ?? cfg, row.to === undefined ? {} : { to: row.to });
      for (const [k, v] of Object.entries(row.expect)) {
        assert.deepEqual((d as Record<string, unknown>)[k], v, `${k} in ${JSON.stringify(d)}`);
      }
      if (row.reason) {
        assert.match((d as { reason: string }).reason, row.reason);
      }
    });
  }
});

describe('planSwitchoverDemote', () => {
  test('fences itself, stops cleanly, waits until the standby replayed the shutdown checkpoint, then promotes it', () => {
    const facts = healthyFromPrimary();
    const d = decideSwitchover(facts, cfg, {});
    assert.equal(d.action, 'demote');
    const plan = planSwitchoverDemote(facts, d, cfg, NOW);
    assert.deepEqual(stepIds(plan), [
      'record-fence',
      'write-fence-file',
      'stop-postgresql',
      'wait-standby-replayed',
      'refresh-own-health',
      'wait-own-health',
      'promote-standby',
    ]);
    // never two 200s on /primary: this node's endpoint must have seen the stop before the promotion
    const wait = plan.steps.find((s) => s.id === 'wait-own-health');
    assert.ok(wait?.kind === 'wait' && wait.onTimeout === 'continue');
    assert.deepEqual(wait.until, { name: 'health-not-primary', on: 'local' });
    const promote = plan.steps.find((s) => s.id === 'promote-standby');
    assert.ok(promote?.kind === 'run' && promote.irreversible === true);
    assert.ok(promote.argv.join(' ').includes('switchover --yes --promote-standby'));
    const fence = plan.steps[0];
    assert.ok(fence?.kind === 'action');
    assert.deepEqual((fence.args['data'] as { reason: string }).reason, 'switchover to db2');
  });

  test('a resumed switchover finds the fence and the stop done', () => {
    const facts = stoppedBySwitchover(peerFacts.standby());
    const d = decideSwitchover(facts, cfg, {}) as Extract<SwitchoverDecision, { action: 'demote' }>;
    const plan = planSwitchoverDemote(facts, d, cfg, NOW);
    assert.deepEqual(
      plan.steps.filter((s) => !s.done).map((s) => s.id),
      ['wait-standby-replayed', 'refresh-own-health', 'wait-own-health', 'promote-standby'],
    );
  });
});

describe('planSwitchoverPromote', () => {
  test('the standby promotes itself as failover does, without fencing the cleanly stopped old primary', () => {
    const facts = pairFacts.standbyWithDeadMaster();
    const plan = planSwitchoverPromote(facts, cfgStandby, '# primary conf\n');
    assert.equal(plan.command, 'switchover');
    const ids = stepIds(plan);
    assert.ok(ids.indexOf('promote') < ids.indexOf('reindex'));
    assert.match(
      plan.steps.find((s) => s.id === 'fence-old-master')?.done ?? '',
      /stopped cleanly and fenced itself/,
    );
    assert.ok(ids.includes('create-slot-for-old-master'));
    assert.ok(ids.includes('clear-inherited-settings'));
  });

  test('an interrupted promotion is completed: promote is done', () => {
    const facts: PairFacts = {
      ...pairFacts.standbyWithDeadMaster(),
      local: localFacts({
        recipe: recipe.override(),
        secretPresent: true,
        failoverInProgress: true,
        pg: { server: server.primary({ timeline: 2 }) },
      }),
    };
    const plan = planSwitchoverPromote(facts, cfgStandby, '# primary conf\n');
    assert.equal(plan.steps.find((s) => s.id === 'promote')?.done, 'already promoted');
  });
});

describe('pg_controldata, history, pg_waldump and pg_rewind parsers', () => {
  test('parses the control data fields rejoin and switchover use', () => {
    const c = parseControlData(
      [
        'Database system identifier:           7301234567890123456',
        'Database cluster state:               shut down',
        'Latest checkpoint location:           0/1500718',
        "Latest checkpoint's REDO location:    0/1500718",
        "Latest checkpoint's TimeLineID:       3",
        'wal_log_hints setting:                on',
        'Data page checksum version:           0',
        'Bytes per WAL segment:                16777216',
      ].join('\n'),
    );
    assert.deepEqual(c, {
      state: 'shut down',
      systemIdentifier: '7301234567890123456',
      checkpointLsn: '0/1500718',
      redoLsn: '0/1500718',
      timeline: 3,
      walLogHints: true,
      checksums: false,
      segmentBytes: 16777216,
    });
    assert.equal(isCleanShutdown(c), true);
    assert.equal(isCleanShutdown({ ...c, state: 'in production' }), false);
  });

  test('parses a timeline history file', () => {
    assert.deepEqual(parseHistory('1\t0/3000148\tno recovery target specified\n\n2\t0/5A0000A0\tx\n'), [
      { parent: 1, switchLsn: '0/3000148' },
      { parent: 2, switchLsn: '0/5A0000A0' },
    ]);
  });

  test('names WAL segments and picks those from the divergence point on', () => {
    const seg = 16 * 1024 * 1024;
    assert.equal(walFileName(1, '0/3000148', seg), '000000010000000000000003');
    assert.equal(walFileName(2, '1/2000000', seg), '000000020000000100000002');
    assert.deepEqual(
      walFilesFrom(
        [
          '000000010000000000000002',
          '000000010000000000000003',
          '000000010000000000000004',
          '000000020000000000000003.partial',
          '00000002.history',
          'archive_status',
        ],
        1,
        '0/3000148',
        seg,
      ),
      ['000000010000000000000003', '000000010000000000000004', '000000020000000000000003.partial'],
    );
  });

  test('reads where the WAL ends and how many records from pg_waldump --stats', () => {
    const out =
      'Total                                      25096   3445819 [64.53%]\npg_waldump: error: error in WAL record at 0/1526058: invalid record length at 0/15261F0: wanted 24, got 0\n';
    assert.deepEqual(parseWaldump(out), { records: 25096, endLsn: '0/15261F0' });
  });

  test('reads the divergence point pg_rewind printed', () => {
    assert.deepEqual(
      parseRewindOutput(
        'pg_rewind: servers diverged at WAL location 0/1010C7A0 on timeline 1\npg_rewind: Done!\n',
      ),
      { divergedAt: '0/1010C7A0', timeline: 1, noRewindRequired: false },
    );
    assert.equal(parseRewindOutput('pg_rewind: no rewind required\n').noRewindRequired, true);
  });
});
