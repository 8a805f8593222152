import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkTimings,
  decideLeader,
  explainAuto,
  ownDeadline,
  takeoverEligibility,
  type LeaderInput,
} from '../../src/monitor/leader.js';
import type { DcsView, LeaderRecord } from '../../src/monitor/dcs.js';
import { parseLeaderRecord } from '../../src/monitor/dcs.js';
import { evaluateAutomatic } from '../../src/commands/check/index.js';
import { formatAuto } from '../../src/commands/status/index.js';
import { parseConfig } from '../../src/core/config.js';
import { decideGuard } from '../../src/monitor/guard.js';
import { config as buildConfig, rawConfig, MiB } from '../fakes/config.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const auto = buildConfig({
  replication: { synchronous: true },
  failover: { automatic: true },
  dcs: { etcd: { endpoints: ['http://10.0.0.10:2379'] } },
});

const rec = (over: Partial<LeaderRecord> = {}): LeaderRecord => ({
  node: 'db1',
  term: 3,
  timeline: 1,
  lsn: '0/3000000',
  sync: true,
  renewedAt: new Date(NOW - 1000).toISOString(),
  ...over,
});

const view = (over: Partial<DcsView> = {}): DcsView => ({
  leader: { ...rec(), leaseId: '42' },
  leaseRemainingMs: 9000,
  term: 3,
  lastLeader: rec(),
  paused: undefined,
  ...over,
});

const base: LeaderInput = {
  now: NOW,
  role: 'primary',
  fenced: false,
  view: view(),
  viewAt: NOW - 100,
  holding: { leaseId: '42', term: 3, renewedAt: NOW - 1000 },
  startedAt: NOW - 60_000,
  peerFollowingAt: NOW - 300,
  peerWritableAt: undefined,
  takeoverRunning: false,
};

describe('configuration of automatic failover', () => {
  test('automatic without endpoints is a ConfigError naming dcs.etcd.endpoints', () => {
    assert.throws(() => parseConfig(rawConfig({ failover: { automatic: true } })), /dcs\.etcd\.endpoints/);
  });
  test('defaults: ttl 10 s, loop 1 s, prefix from the sorted node names', () => {
    assert.equal(auto.failover.ttlMs, 10_000);
    assert.equal(auto.failover.loopMs, 1000);
    assert.equal(auto.dcs.etcd.prefix, '/chef-ha/db1+db2');
  });
  test('a ttl that is not whole seconds is refused', () => {
    assert.throws(
      () =>
        parseConfig(rawConfig({ failover: { ttlMs: 10_500 }, dcs: { etcd: { endpoints: ['http://x:1'] } } })),
      /whole number of seconds/,
    );
  });
});

describe('the primary and the leader key', () => {
  test('holding the key with a fresh view: renew', () => {
    assert.equal(decideLeader(base, auto).action, 'renew');
  });
  test('no key yet on a writable primary: acquire at the current term', () => {
    const d = decideLeader({ ...base, holding: undefined, view: view({ leader: undefined, term: 0 }) }, auto);
    assert.equal(d.action, 'acquire');
    assert.equal(d.action === 'acquire' ? d.expectedTerm : -1, 0);
  });
  test('a view read just before its own acquisition (older term, no key) is not taken for a superseded term', () => {
    const d = decideLeader({ ...base, view: view({ leader: undefined, term: 2 }) }, auto);
    assert.notEqual(d.action, 'fence');
  });
  test('another node holds the key: fence (superseded)', () => {
    const d = decideLeader(
      { ...base, view: view({ leader: { ...rec({ node: 'db2', term: 4 }), leaseId: '7' }, term: 4 }) },
      auto,
    );
    assert.equal(d.action, 'fence');
    assert.match(d.reason, /db2 holds the leader key/);
  });
  test('the key is gone and the term moved on: fence until rejoin', () => {
    const d = decideLeader({ ...base, view: view({ leader: undefined, term: 4 }) }, auto);
    assert.equal(d.action, 'fence');
  });
  test('its own lease expired and nobody took the key: take it again, keeping the term', () => {
    const d = decideLeader(
      {
        ...base,
        holding: { leaseId: 'lost', term: 3, renewedAt: NOW - 3000 },
        view: view({ leader: undefined }),
      },
      auto,
    );
    assert.equal(d.action, 'acquire');
    assert.equal(d.action === 'acquire' && d.keepTerm, true);
  });
  test('etcd unreachable before the deadline: nothing yet, says when it fences', () => {
    const d = decideLeader(
      { ...base, viewAt: NOW - 5000, holding: { leaseId: '42', term: 3, renewedAt: NOW - 5000 } },
      auto,
    );
    assert.equal(d.action, 'none');
    assert.match(d.reason, /fences itself in 1500 ms/);
  });
  test('etcd unreachable past the deadline, standby not seen following: fence before the lease can expire', () => {
    const renewedAt = NOW - 7000;
    assert.ok(NOW >= ownDeadline(auto, renewedAt));
    const d = decideLeader(
      {
        ...base,
        viewAt: renewedAt,
        holding: { leaseId: '42', term: 3, renewedAt },
        peerFollowingAt: NOW - 5000,
      },
      auto,
    );
    assert.equal(d.action, 'fence');
  });
  test('etcd unreachable past the deadline but the standby follows: failsafe, no fence', () => {
    const renewedAt = NOW - 30_000;
    const d = decideLeader(
      {
        ...base,
        viewAt: renewedAt,
        holding: { leaseId: '42', term: 3, renewedAt },
        peerFollowingAt: NOW - 500,
      },
      auto,
    );
    assert.equal(d.action, 'none');
    assert.match(d.reason, /failsafe/);
  });
  test('a primary whose PostgreSQL stopped answering is fenced once its deadline passed', () => {
    const renewedAt = NOW - 7000;
    const d = decideLeader({ ...base, role: 'down', holding: { leaseId: '42', term: 3, renewedAt } }, auto);
    assert.equal(d.action, 'fence');
    const early = decideLeader(
      { ...base, role: 'down', holding: { leaseId: '42', term: 3, renewedAt: NOW - 1000 } },
      auto,
    );
    assert.equal(early.action, 'none');
  });
  test('the self-fence deadline comes 3.5 s before the lease can expire with the defaults', () => {
    assert.equal(ownDeadline(auto, 0), 6500);
  });
});

describe('the standby and the leader key', () => {
  // this node (db1) is the standby here; db2 is the primary
  const sb: LeaderInput = {
    ...base,
    role: 'standby',
    holding: undefined,
    peerFollowingAt: undefined,
    view: view({ leader: { ...rec({ node: 'db2' }), leaseId: '42' }, lastLeader: rec({ node: 'db2' }) }),
  };
  test('the primary holds the key: no promotion', () => {
    const d = decideLeader(sb, auto);
    assert.equal(d.action, 'none');
    assert.match(d.reason, /db2 holds the leader key/);
  });
  test('key gone, primary silent for peerQuietMs: take over', () => {
    const d = decideLeader({ ...sb, view: view({ leader: undefined }), peerWritableAt: NOW - 6000 }, auto);
    assert.equal(d.action, 'takeover');
  });
  test('key gone but the old primary answered writable recently: wait', () => {
    const d = decideLeader({ ...sb, view: view({ leader: undefined }), peerWritableAt: NOW - 1000 }, auto);
    assert.equal(d.action, 'none');
    assert.match(d.reason, /writable primary/);
  });
  test('key released by a fenced old primary: no need to wait', () => {
    const d = decideLeader(
      {
        ...sb,
        view: view({ leader: undefined, lastLeader: rec({ node: 'db2', released: true }) }),
        peerWritableAt: NOW - 300,
      },
      auto,
    );
    assert.equal(d.action, 'takeover');
  });
  test('paused: no takeover, and says so', () => {
    const d = decideLeader(
      {
        ...sb,
        view: view({ leader: undefined, paused: { at: 'x', by: 'db1', reason: 'maint' } }),
        peerWritableAt: undefined,
      },
      auto,
    );
    assert.equal(d.action, 'none');
    assert.match(d.reason, /paused/);
  });
  test('etcd unreachable: no failover', () => {
    const d = decideLeader({ ...sb, viewAt: NOW - 10_000, view: view({ leader: undefined }) }, auto);
    assert.equal(d.action, 'none');
    assert.match(d.reason, /etcd unreachable/);
  });
});

describe('takeover eligibility', () => {
  test('synchronous at the last renewal: eligible', () => {
    assert.equal(takeoverEligibility(rec({ node: 'db2' }), '0/1000000', auto).ok, true);
  });
  test('not synchronous and far behind: refused with the lag', () => {
    const e = takeoverEligibility(rec({ node: 'db2', sync: false, lsn: '0/9000000' }), '0/1000000', auto);
    assert.equal(e.ok, false);
    assert.match(e.reason, /behind/);
  });
  test('not synchronous but within maxLagBytes: eligible', () => {
    const e = takeoverEligibility(rec({ node: 'db2', sync: false, lsn: '0/1000100' }), '0/1000000', auto);
    assert.equal(e.ok, true);
  });
  test('no renewal ever recorded: refused', () => {
    assert.equal(takeoverEligibility(undefined, '0/1', auto).ok, false);
  });
});

describe('timings', () => {
  test('the defaults are coherent and give the worst-case RTO', () => {
    const t = checkTimings(auto);
    assert.deepEqual(t.problems, []);
    assert.ok(t.worstRtoMs >= auto.failover.ttlMs);
  });
  test('a loop longer than a third of the TTL is refused with its fix', () => {
    const c = buildConfig({
      failover: { automatic: true, loopMs: 4000 },
      dcs: { etcd: { endpoints: ['http://x:1'] } },
    });
    const t = checkTimings(c);
    assert.ok(t.problems.some((p) => /loopMs/.test(p.problem) && /at most 3333/.test(p.fix)));
  });
  test('a self-fence margin too short for a loop and the fence is refused', () => {
    const c = buildConfig({
      failover: { automatic: true, selfFenceMarginMs: 1000 },
      dcs: { etcd: { endpoints: ['http://x:1'] } },
    });
    assert.ok(checkTimings(c).problems.some((p) => /selfFenceMarginMs/.test(p.problem)));
  });
  test('HAProxy inter x fall longer than the margin is refused', () => {
    const c = buildConfig({
      haproxy: { interMs: 3000, fall: 3 },
      failover: { automatic: true },
      dcs: { etcd: { endpoints: ['http://x:1'] } },
    });
    assert.ok(checkTimings(c).problems.some((p) => /haproxy.interMs/.test(p.problem)));
  });
  test('degradeAfterMs not below the TTL is refused', () => {
    const c = buildConfig({
      replication: { synchronous: true },
      monitor: { degradeAfterMs: 10_000 },
      failover: { automatic: true },
      dcs: { etcd: { endpoints: ['http://x:1'] } },
    });
    assert.ok(checkTimings(c).problems.some((p) => /degradeAfterMs/.test(p.problem)));
  });
  test('check fails on incoherent timings and prints the RTO', () => {
    const c = buildConfig({
      failover: { automatic: true, loopMs: 5000 },
      dcs: { etcd: { endpoints: ['http://x:1'] } },
    });
    const r = evaluateAutomatic(c);
    assert.ok(r.some((x) => x.level === 'fail'));
    assert.ok(r.some((x) => x.name === 'failover-rto' && /worst-case RTO/.test(x.detail)));
  });
});

describe('status explain line', () => {
  test('paused', () => {
    const a = explainAuto(
      view({ paused: { at: 't', by: 'db1', reason: 'upgrade' } }),
      undefined,
      true,
      'db2',
      auto,
    );
    assert.match(formatAuto(a), /PAUSED/);
    assert.match(a.explain, /paused/);
  });
  test('etcd unreachable', () => {
    const a = explainAuto(undefined, 'timeout', true, 'db2', auto);
    assert.equal(a.reachable, false);
    assert.match(a.explain, /etcd unreachable/);
  });
  test('lagging, not sync', () => {
    const a = explainAuto(
      view({ leader: undefined, lastLeader: rec({ sync: false }) }),
      undefined,
      false,
      'db2',
      auto,
    );
    assert.match(a.explain, /lagging, not sync/);
  });
  test('a leader record round-trips and rejects garbage', () => {
    assert.deepEqual(parseLeaderRecord(JSON.stringify(rec())), rec());
    assert.equal(parseLeaderRecord('nope'), undefined);
    assert.equal(parseLeaderRecord(JSON.stringify({ node: 1 })), undefined);
  });
  test('MiB helper sanity for maxLagBytes default', () => {
    assert.equal(auto.failover.maxLagBytes, 16 * MiB);
  });
});

describe('the pre-start guard with automatic failover', () => {
  const facts = {
    fence: { running: false, inRecovery: undefined, standbySignal: false, recoveryConf: false },
    startsReadOnly: false,
    checkpointTimeline: 1,
    peer: undefined,
  };
  test('another node holds the leader key: the returning old primary starts fenced', () => {
    const d = decideGuard({ ...facts, leader: 'db2' }, auto);
    assert.equal(d.action, 'fence');
    assert.match(d.reason, /db2 holds the leader key/);
  });
  test('it holds the key itself, or nobody does: allowed as before', () => {
    assert.equal(decideGuard({ ...facts, leader: 'db1' }, auto).action, 'allow');
    assert.equal(decideGuard({ ...facts, leader: null }, auto).action, 'allow');
  });
});
