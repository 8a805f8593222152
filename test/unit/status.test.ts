import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PairFacts } from '../../src/core/facts.js';
import { ExitCode } from '../../src/core/errors.js';
import { summarizeStatus, type NodeStatus, type PairStatus } from '../../src/commands/status/summarize.js';
import { MiB, config, standbyConfig } from '../fakes/config.js';
import {
  GATHERED_AT,
  PRIMARY_LSN,
  localFacts,
  localPgDown,
  lsnMinus,
  pairFacts,
  peerFacts,
  recipe,
  replicationRow,
  server,
} from '../fakes/facts.js';
import { formatStatus } from '../../src/commands/status/format.js';

// summarizeStatus (src/commands/status/summarize.ts)

const cfg = config();
const sync = config({ replication: { synchronous: true } });

function node(s: PairStatus, name: string): NodeStatus {
  const found = s.nodes.find((n) => n.name === name);
  assert.ok(found, `no node ${name}`);
  return found;
}

/** db1 (local) is the primary; db2 its standby as described by `row` overrides. */
function primaryView(overrides: Parameters<typeof pairFacts.primaryWithStreamingStandby>[0] = {}): PairFacts {
  return pairFacts.primaryWithStreamingStandby({ local: 'primary', ...overrides });
}

describe('summarizeStatus: healthy', () => {
  test('is healthy (exit 0) with a primary and a streaming standby, seen from the primary', () => {
    const s = summarizeStatus(primaryView(), cfg);
    assert.equal(s.verdict, 'healthy');
    assert.equal(s.exitCode, ExitCode.Ok);
    assert.deepEqual(s.problems, []);
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.role, n.local, n.streaming]),
      [
        ['db1', 'primary', true, null],
        ['db2', 'standby', false, true],
      ],
    );
  });

  test('is healthy seen from the standby too', () => {
    const s = summarizeStatus(pairFacts.primaryWithStreamingStandby(), standbyConfig());
    assert.equal(s.verdict, 'healthy');
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.address, n.role, n.local]),
      [
        ['db2', '10.0.0.2', 'standby', true],
        ['db1', '10.0.0.1', 'primary', false],
      ],
    );
    assert.equal(node(s, 'db2').recipe, 'patched');
    assert.equal(node(s, 'db1').recipe, '(on that host)');
  });

  test('is healthy in synchronous mode when the standby is sync', () => {
    const s = summarizeStatus(primaryView({ syncState: 'sync' }), sync);
    assert.equal(s.verdict, 'healthy');
    assert.equal(s.synchronous, true);
    assert.equal(node(s, 'db2').syncState, 'sync');
  });

  test("reports the standby's lag, replay lag and position from the primary's view", () => {
    const s = summarizeStatus(primaryView({ lagBytes: 4 * MiB }), cfg);
    const standby = node(s, 'db2');
    assert.equal(standby.lagBytes, 4 * MiB);
    assert.equal(standby.lagSeconds, 2.5);
    assert.equal(standby.lsn, lsnMinus(PRIMARY_LSN, 4 * MiB));
    assert.equal(node(s, 'db1').lsn, PRIMARY_LSN);
    assert.equal(node(s, 'db1').lagBytes, null);
  });

  test("computes the lag from the LSNs when the primary's row has no lag_bytes", () => {
    const facts = pairFacts.primaryWithStreamingStandby({ lagBytes: 2048 });
    const peer = facts.peer.server!;
    const withoutLag = {
      ...facts,
      peer: {
        ...facts.peer,
        server: { ...peer, replication: peer.replication.map((r) => ({ ...r, lag_bytes: null })) },
      },
    };
    const s = summarizeStatus(withoutLag, standbyConfig());
    assert.equal(node(s, 'db2').lagBytes, 2048);
  });
});

describe('summarizeStatus: degraded (exit 8)', () => {
  const table: readonly {
    readonly scenario: string;
    readonly facts: PairFacts;
    readonly config?: typeof cfg;
    readonly problems: readonly string[];
  }[] = [
    {
      scenario: 'the standby is connected but not streaming',
      facts: primaryView({ state: 'catchup' }),
      problems: ['db2 is a standby but not streaming from the primary'],
    },
    {
      scenario: 'the standby is not connected to the primary at all',
      facts: (() => {
        const f = primaryView();
        return { ...f, local: { ...f.local, pg: { ...f.local.pg, server: server.primary() } } };
      })(),
      problems: ['db2 is a standby but not streaming from the primary'],
    },
    {
      scenario: 'the standby lags beyond failover.maxLagBytes',
      facts: primaryView({ lagBytes: 48 * MiB }),
      problems: ['db2 is 50331648 bytes behind (failover.maxLagBytes 16777216)'],
    },
    {
      scenario: 'synchronous mode is configured but the standby is async',
      facts: primaryView({ syncState: 'async' }),
      config: sync,
      problems: ['synchronous mode is configured but db2 is async'],
    },
    {
      scenario: 'the peer is unreachable while this node is the primary',
      facts: {
        ...primaryView(),
        peer: peerFacts.unreachable('connect ETIMEDOUT 10.0.0.2:5432'),
      },
      problems: ['db2 does not answer: connect ETIMEDOUT 10.0.0.2:5432'],
    },
    {
      scenario: 'the peer is unreachable without an error text',
      facts: { ...primaryView(), peer: { reachable: false, slots: [] } },
      problems: ['db2 does not answer: no answer'],
    },
    {
      scenario: 'the old primary answers read-only (fenced over SQL)',
      facts: {
        ...pairFacts.standbyWithDeadMaster(),
        local: localFacts({ recipe: recipe.override(), pg: { server: server.primary({ timeline: 2 }) } }),
        peer: peerFacts.primary({ readOnlyDefault: true }),
      },
      config: standbyConfig(),
      problems: ['db1 is read-only (run `chef-ha-ctl rejoin` there to make it the standby again)'],
    },
    {
      scenario: 'the recipe on this node is the original again',
      facts: primaryView({ localOverrides: { recipe: recipe.original(), recordedOriginalSha256: 'abc' } }),
      problems: [
        'the recipe on db1 is ORIGINAL (a package upgrade put it back: run `chef-ha-ctl reconfigure`)',
      ],
    },
    {
      scenario: 'chef-ha is not set up on this node',
      facts: primaryView({ localOverrides: { recipe: recipe.original() } }),
      problems: ['the recipe on db1 is original (not set up)'],
    },
    {
      scenario: 'the recipe is unknown',
      facts: primaryView({ localOverrides: { recipe: recipe.unknown() } }),
      problems: ['the recipe on db1 is unknown'],
    },
  ];
  for (const row of table) {
    test(`is degraded when ${row.scenario}`, () => {
      const s = summarizeStatus(row.facts, row.config ?? cfg);
      assert.equal(s.verdict, 'degraded');
      assert.equal(s.exitCode, ExitCode.StatusDegraded);
      assert.deepEqual(s.problems, row.problems);
    });
  }

  test('says "not connected" for a sync standby missing from pg_stat_replication', () => {
    const f = primaryView();
    const facts = { ...f, local: { ...f.local, pg: { ...f.local.pg, server: server.primary() } } };
    const s = summarizeStatus(facts, sync);
    assert.deepEqual(s.problems, [
      'db2 is a standby but not streaming from the primary',
      'synchronous mode is configured but db2 is not connected',
    ]);
  });

  test('is degraded when this node is down and the peer is the primary', () => {
    const facts: PairFacts = {
      local: localFacts({ recipe: recipe.override(), pg: localPgDown('no socket') }),
      peer: peerFacts.primary(),
      gatheredAt: GATHERED_AT,
    };
    const s = summarizeStatus(facts, standbyConfig());
    assert.equal(s.verdict, 'degraded');
    assert.equal(node(s, 'db2').role, 'down');
    assert.equal(node(s, 'db2').reachable, false);
    assert.deepEqual(s.problems, ['db2 does not answer: no socket']);
  });
});

describe('summarizeStatus: broken (exit 9)', () => {
  test('is broken when there is no writable primary', () => {
    const s = summarizeStatus(pairFacts.standbyWithDeadMaster(), standbyConfig());
    assert.equal(s.verdict, 'broken');
    assert.equal(s.exitCode, ExitCode.StatusBroken);
    assert.deepEqual(s.problems, [
      'no writable primary: Chef Server cannot take writes (run `chef-ha-ctl failover` on the standby)',
      'db2 is a standby but not streaming from the primary',
      'db1 does not answer: connect ECONNREFUSED 10.0.0.1:5432',
    ]);
    assert.equal(node(s, 'db1').role, 'unreachable');
    assert.equal(node(s, 'db1').timeline, null);
  });

  test('is broken with two writable primaries (split brain)', () => {
    const facts: PairFacts = {
      local: localFacts({ recipe: recipe.override(), pg: { server: server.primary({ timeline: 2 }) } }),
      peer: peerFacts.primary(),
      gatheredAt: GATHERED_AT,
    };
    const s = summarizeStatus(facts, standbyConfig());
    assert.equal(s.verdict, 'broken');
    assert.equal(s.exitCode, ExitCode.StatusBroken);
    assert.deepEqual(s.problems, [
      'two writable primaries: split brain; fence one of them now (`chef-ha-ctl fence` on the one to give up)',
    ]);
  });

  test('is broken when both nodes are standbys, even in synchronous mode', () => {
    const facts = { ...pairFacts.standbyWithDeadMaster(), peer: peerFacts.standby() };
    const s = summarizeStatus(facts, standbyConfig({ replication: { synchronous: true } }));
    assert.equal(s.verdict, 'broken');
    assert.ok(!s.problems.some((p) => p.startsWith('synchronous mode')));
  });
});

describe('summarizeStatus roles', () => {
  const fenced = { at: '2026-01-15T12:00:00.000Z', reason: 'failover to db2' };
  test('calls a fenced node in recovery without a WAL receiver "fenced"', () => {
    const facts = {
      ...pairFacts.primaryWithStreamingStandby(),
      local: localFacts({ fenced, pg: { server: server.standby({ walReceiver: null }) } }),
    };
    const s = summarizeStatus(facts, standbyConfig());
    assert.equal(node(s, 'db2').role, 'fenced');
    assert.equal(node(s, 'db2').detail, 'fenced: failover to db2');
    assert.ok(
      s.problems.includes('db2 is fenced (run `chef-ha-ctl rejoin` there to make it the standby again)'),
    );
  });

  test('calls a fenced node that streams again a standby', () => {
    const facts = {
      ...pairFacts.primaryWithStreamingStandby(),
      local: localFacts({ fenced, pg: { server: server.standby() } }),
    };
    assert.equal(node(summarizeStatus(facts, standbyConfig()), 'db2').role, 'standby');
  });

  test('calls a fenced read-only old primary "fenced", and an unfenced one "read-only"', () => {
    const readOnly = server.primary({ readOnlyDefault: true });
    const base = pairFacts.primaryWithStreamingStandby({ local: 'standby' });
    const fencedFacts = {
      ...base,
      local: localFacts({ fenced, pg: { server: readOnly } }),
      peer: peerFacts.primary(),
    };
    assert.equal(node(summarizeStatus(fencedFacts, standbyConfig()), 'db2').role, 'fenced');
    const plain = { ...fencedFacts, local: localFacts({ pg: { server: readOnly } }) };
    assert.equal(node(summarizeStatus(plain, standbyConfig()), 'db2').role, 'read-only');
  });

  test("takes a standby's lag in seconds from its replay age when the primary has no row for it", () => {
    const facts = pairFacts.primaryWithStreamingStandby({
      localOverrides: { pg: { server: server.standby({ replayAgeS: 7.5 }) } },
    });
    const peer = facts.peer.server!;
    const noRow = { ...facts, peer: { ...facts.peer, server: { ...peer, replication: [] } } };
    const standby = node(summarizeStatus(noRow, standbyConfig()), 'db2');
    assert.equal(standby.lagSeconds, 7.5);
    assert.equal(standby.streaming, false);
    assert.equal(standby.lagBytes, 0);
  });

  test('takes the sync state and streaming flag from the row named after the standby', () => {
    const f = primaryView();
    const rows = [
      replicationRow({ application_name: 'pg_basebackup', state: 'backup', sync_state: 'async' }),
      replicationRow({ application_name: 'chef_ha_db2', state: 'streaming', sync_state: 'potential' }),
    ];
    const facts = {
      ...f,
      local: { ...f.local, pg: { ...f.local.pg, server: server.primary({ replication: rows }) } },
    };
    const standby = node(summarizeStatus(facts, cfg), 'db2');
    assert.equal(standby.syncState, 'potential');
    assert.equal(standby.streaming, true);
  });
});

// formatStatus (src/commands/status/format.ts)

describe('formatStatus', () => {
  test('prints the verdict, a header and one row per node with names, addresses and roles', () => {
    const text = formatStatus(
      summarizeStatus(pairFacts.primaryWithStreamingStandby({ local: 'primary', lagBytes: 1024 }), config()),
    );
    assert.equal(
      text,
      [
        'chef-ha pair: streaming, asynchronous — HEALTHY',
        '   node            role                timeline  lsn         lag             sync   recipe',
        '*  db1 (10.0.0.1)  primary             1         1/0         -               -      patched',
        '   db2 (10.0.0.2)  standby, streaming  1         0/FFFFFC00  1.0 KiB / 2.5s  async  (on that host)',
        '',
      ].join('\n'),
    );
  });

  test('lists every problem under the table and marks a standby that does not stream', () => {
    const text = formatStatus(summarizeStatus(pairFacts.standbyWithDeadMaster(), standbyConfig()));
    const lines = text.trimEnd().split('\n');
    assert.equal(lines[0], 'chef-ha pair: streaming, asynchronous — BROKEN');
    assert.match(lines[2] ?? '', /^\* {2}db2 \(10\.0\.0\.2\) {2}standby, NOT streaming/);
    assert.match(lines[3] ?? '', /^ {3}db1 \(10\.0\.0\.1\) {2}unreachable {2}/);
    assert.deepEqual(lines.slice(4), [
      '  ! no writable primary: Chef Server cannot take writes (run `chef-ha-ctl failover` on the standby)',
      '  ! db2 is a standby but not streaming from the primary',
      '  ! db1 does not answer: connect ECONNREFUSED 10.0.0.1:5432',
    ]);
  });

  test('says synchronous in the title and shows the sync state', () => {
    const text = formatStatus(
      summarizeStatus(
        pairFacts.primaryWithStreamingStandby({ local: 'primary', syncState: 'sync', lagBytes: 48 * MiB }),
        config({ replication: { synchronous: true } }),
      ),
    );
    assert.match(text, /^chef-ha pair: streaming, synchronous — DEGRADED\n/);
    assert.match(text, / 48\.0 MiB \/ 2\.5s {2}sync /);
  });

  test('omits the synchronous flag for londiste mode', () => {
    const text = formatStatus(
      summarizeStatus(
        pairFacts.primaryWithStreamingStandby({ local: 'primary' }),
        config({ replication: { mode: 'londiste' } }),
      ),
    );
    assert.match(text, /^chef-ha pair: londiste — HEALTHY\n/);
  });

  test('shows the lag in bytes alone when the replay lag is unknown', () => {
    const s = summarizeStatus(
      pairFacts.primaryWithStreamingStandby({ local: 'primary', lagBytes: 10 }),
      config(),
    );
    const text = formatStatus({ ...s, nodes: s.nodes.map((n) => ({ ...n, lagSeconds: null })) });
    assert.match(text, / 10 B {2}/);
  });
});

describe('summarizeStatus: the background reindex of setup-slave', () => {
  const withJob = (job: NonNullable<PairFacts['local']['reindexJob']>): PairFacts => {
    const f = pairFacts.primaryWithStreamingStandby();
    return { ...f, local: { ...f.local, reindexJob: job } };
  };
  const base = { startedAt: '2026-11-21T10:00:00.000Z', log: '/var/opt/chef-ha/logs/reindex.log' };

  test('a running reindex is shown and keeps the pair healthy', () => {
    const s = summarizeStatus(withJob({ ...base, state: 'running' }), standbyConfig());
    assert.equal(s.verdict, 'healthy');
    assert.match(formatStatus(s), /search index: reindex running since 2026-11-21T10:00:00.000Z/);
  });

  test('a failed reindex makes the pair degraded (exit 8) and names the log and the fix', () => {
    const s = summarizeStatus(withJob({ ...base, state: 'failed', exitCode: 1 }), standbyConfig());
    assert.equal(s.exitCode, ExitCode.StatusDegraded);
    assert.deepEqual(s.problems, [
      'the background reindex on db2 (started 2026-11-21T10:00:00.000Z) failed with exit 1: search there is incomplete; see /var/opt/chef-ha/logs/reindex.log and run `chef-server-ctl reindex`',
    ]);
  });

  test('a reindex that vanished without a status counts as failed', () => {
    const s = summarizeStatus(withJob({ ...base, state: 'vanished' }), standbyConfig());
    assert.equal(s.verdict, 'degraded');
    assert.match(s.problems[0] ?? '', /ended without a status/);
  });
});

describe('summarizeStatus: sync degrade', () => {
  test('shows when and at which LSN the monitor switched the primary to asynchronous, and what it means', () => {
    const facts = primaryView({ syncState: 'async' });
    const degraded = {
      ...facts,
      local: {
        ...facts.local,
        degraded: { since: '2026-01-15T12:00:00.000Z', lsn: '0/5000100', standby: 'db2' },
      },
    };
    const s = summarizeStatus(degraded, sync);
    assert.deepEqual(s.syncDegraded, { since: '2026-01-15T12:00:00.000Z', lsn: '0/5000100', standby: 'db2' });
    assert.equal(s.verdict, 'degraded');
    assert.ok(
      s.problems.includes(
        'synchronous mode degraded since 2026-01-15T12:00:00.000Z at LSN 0/5000100: db2 stopped confirming, so writes acknowledged since then exist only on db1 until db2 catches up (the monitor restores sync mode then)',
      ),
    );
    assert.match(
      formatStatus(s),
      /^chef-ha pair: streaming, synchronous DEGRADED since 2026-01-15T12:00:00.000Z at LSN 0\/5000100 — DEGRADED$/m,
    );
  });

  test('has no degrade note without the record', () => {
    assert.equal(summarizeStatus(primaryView({ syncState: 'sync' }), sync).syncDegraded, null);
  });
});
