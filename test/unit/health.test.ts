import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { answer, evaluateSnapshot, nextPeerSeenNewer, parseLagBound } from '../../src/health/answer.js';
import type { HealthSnapshot, ServerView } from '../../src/health/snapshot.js';
import {
  startHealthServer,
  type HealthServerOptions,
  type RunningHealthServer,
} from '../../src/health/server.js';
import { MiB } from '../fakes/config.js';

const NOW = 1_800_000_000_000;
const CTX = { now: NOW, staleMs: 3000 };

function server(over: Partial<ServerView> = {}): ServerView {
  return {
    inRecovery: false,
    readOnly: false,
    timeline: 1,
    currentLsn: '0/3000000',
    receiveLsn: null,
    replayLsn: null,
    replayAgeS: null,
    walReceiver: null,
    standbys: [],
    ...over,
  };
}

const standbyServer = (over: Partial<ServerView> = {}): ServerView =>
  server({
    inRecovery: true,
    currentLsn: null,
    receiveLsn: '0/3000000',
    replayLsn: '0/3000000',
    walReceiver: 'streaming',
    ...over,
  });

/** db1 is a writable primary streaming to db2 (sync), unless overridden. */
function snap(over: Partial<HealthSnapshot> = {}): HealthSnapshot {
  return {
    takenAt: NOW - 500,
    node: 'db1',
    peerName: 'db2',
    mode: 'streaming',
    local: {
      reachable: true,
      server: server({
        standbys: [{ name: 'db2', state: 'streaming', syncState: 'sync', lagBytes: 0, lagSeconds: 0.001 }],
      }),
    },
    peer: { reachable: true, server: standbyServer() },
    ...over,
  };
}

/** db2's view: a streaming standby of db1. */
function standbySnap(over: Partial<HealthSnapshot> = {}, lagBytes = 0): HealthSnapshot {
  return {
    takenAt: NOW - 500,
    node: 'db2',
    peerName: 'db1',
    mode: 'streaming',
    local: { reachable: true, server: standbyServer() },
    peer: {
      reachable: true,
      server: server({
        currentLsn: `0/${(0x3000000 + lagBytes).toString(16).toUpperCase()}`,
        standbys: [{ name: 'db2', state: 'streaming', syncState: 'async', lagBytes, lagSeconds: 0.25 }],
      }),
    },
    ...over,
  };
}

const get = (s: HealthSnapshot | undefined, url: string, method = 'GET'): number =>
  answer(s, { method, url }, CTX).status;

describe('health answers: /primary', () => {
  const cases: [string, HealthSnapshot | undefined, number][] = [
    ['answers 200 on a writable primary that sees a standby', snap(), 200],
    [
      'answers 200 on a writable primary whose peer does not answer',
      snap({ peer: { reachable: false, error: 'refused' } }),
      200,
    ],
    ['answers 503 before the first snapshot', undefined, 503],
    ['answers 503 when the snapshot is older than staleMs', snap({ takenAt: NOW - 3001 }), 503],
    [
      'answers 503 when PostgreSQL does not answer',
      snap({ local: { reachable: false, error: 'timeout' } }),
      503,
    ],
    ['answers 503 on a standby', standbySnap(), 503],
    [
      'answers 503 on a fenced node even if writable',
      snap({ fenced: { at: '2026-01-01T00:00:00Z', reason: 'failover' } }),
      503,
    ],
    [
      'answers 503 on a read-only (SQL-fenced) primary',
      snap({ local: { reachable: true, server: server({ readOnly: true }) } }),
      503,
    ],
    [
      'answers 503 when the peer is a writable primary too (two primaries)',
      snap({ peer: { reachable: true, server: server({ timeline: 1 }) } }),
      503,
    ],
    [
      'answers 503 when the peer is on a newer timeline, even as a standby',
      snap({ peer: { reachable: true, server: standbyServer({ timeline: 2 }) } }),
      503,
    ],
    [
      'answers 200 when the peer is a read-only old primary on an older timeline',
      snap({
        local: { reachable: true, server: server({ timeline: 2 }) },
        peer: { reachable: true, server: server({ timeline: 1, readOnly: true }) },
      }),
      200,
    ],
  ];
  for (const [name, s, status] of cases) {
    test(name, () => {
      for (const path of ['/', '/primary', '/master', '/read-write']) {
        assert.equal(get(s, path), status, path);
      }
    });
  }

  test('both sides of a two-primary split answer 503', () => {
    const a = snap({ peer: { reachable: true, server: server() } });
    const b = snap({ node: 'db2', peerName: 'db1', peer: { reachable: true, server: server() } });
    assert.equal(get(a, '/primary'), 503);
    assert.equal(get(b, '/primary'), 503);
    assert.match(
      answer(a, { method: 'GET', url: '/primary' }, CTX).body,
      /db2 answers as a writable primary too/,
    );
  });

  test('HEAD and OPTIONS give the same status with no body', () => {
    assert.deepEqual(
      [
        get(snap(), '/primary', 'HEAD'),
        get(snap(), '/primary', 'OPTIONS'),
        get(standbySnap(), '/primary', 'OPTIONS'),
      ],
      [200, 200, 503],
    );
    assert.equal(
      answer(snap(), { method: 'OPTIONS', url: '/primary' }, CTX).headers['allow'],
      'GET, HEAD, OPTIONS',
    );
  });
});

describe('health answers: the peer seen on a newer timeline is remembered', () => {
  const promoted = snap({ peer: { reachable: true, server: server({ timeline: 2 }) } });
  const lost = snap({ peer: { reachable: false, error: 'timeout expired' } });

  test('seeing the peer on a newer timeline is remembered; a snapshot without the peer keeps it', () => {
    const seen = nextPeerSeenNewer(undefined, promoted);
    assert.deepEqual(seen, { timeline: 1, peerTimeline: 2, at: promoted.takenAt });
    assert.equal(nextPeerSeenNewer(seen, lost), seen);
    // this node's PostgreSQL did not answer either: nothing new is known
    assert.equal(nextPeerSeenNewer(seen, snap({ local: { reachable: false }, peer: lost.peer })), seen);
  });

  test('the memory ends when the peer answers otherwise or this node leaves the old timeline', () => {
    const seen = nextPeerSeenNewer(undefined, promoted);
    assert.equal(nextPeerSeenNewer(seen, snap()), undefined, 'the peer answers as a standby on timeline 1');
    // the peer does not answer, but this node has left timeline 1
    const left: [ServerView, string][] = [
      [standbyServer({ timeline: 2 }), 'rejoined as a standby'],
      [server({ timeline: 3 }), 'promoted past the peer'],
    ];
    for (const [me, why] of left) {
      const s = snap({ local: { reachable: true, server: me }, peer: lost.peer });
      assert.equal(nextPeerSeenNewer(seen, s), undefined, why);
    }
    assert.equal(nextPeerSeenNewer(undefined, lost), undefined);
    assert.equal(
      nextPeerSeenNewer(undefined, { ...promoted, mode: 'londiste' }),
      undefined,
      'timelines of two Londiste clusters do not compare',
    );
  });

  test('with the memory, /primary stays 503 while the peer does not answer, and says why', () => {
    const seen = nextPeerSeenNewer(undefined, promoted);
    assert.equal(get(lost, '/primary'), 200, 'without the memory the old primary would answer 200');
    const a = answer(lost, { method: 'GET', url: '/primary' }, { ...CTX, peerSeenNewer: seen });
    assert.equal(a.status, 503);
    assert.match(a.body, /db2 was seen on a newer timeline \(2 > 1\) at .* and has not answered since/);
    const status = JSON.parse(
      answer(lost, { method: 'GET', url: '/status' }, { ...CTX, peerSeenNewer: seen }).body,
    ) as { peer_seen_newer: { timeline: number; peer_timeline: number } | null };
    assert.deepEqual([status.peer_seen_newer?.timeline, status.peer_seen_newer?.peer_timeline], [1, 2]);
  });
});

describe('health answers: /replica, /standby, /read-only, /health', () => {
  test('answers 200 on a streaming standby and 503 on the primary', () => {
    assert.equal(get(standbySnap(), '/replica'), 200);
    assert.equal(get(standbySnap(), '/standby'), 200);
    assert.equal(get(snap(), '/replica'), 503);
  });

  test('applies the lag bound against the primary write position', () => {
    const s = standbySnap({}, 20 * MiB);
    assert.equal(get(s, '/replica?lag=16MB'), 503);
    assert.equal(get(s, '/replica?lag=32MB'), 200);
    assert.equal(get(s, `/replica?lag=${20 * MiB}`), 200);
    assert.equal(get(s, `/replica?lag=${20 * MiB - 1}`), 503);
  });

  test('fails closed on a lag bound when the primary cannot be asked', () => {
    const s = standbySnap({ peer: { reachable: false, error: 'refused' } });
    assert.equal(get(s, '/replica'), 200);
    assert.equal(get(s, '/replica?lag=16MB'), 503);
  });

  test('answers 503 on a standby whose WAL receiver is not streaming', () => {
    const s = standbySnap({ local: { reachable: true, server: standbyServer({ walReceiver: null }) } });
    assert.equal(get(s, '/replica'), 503);
  });

  test('answers 503 on a fenced node that runs as a standby', () => {
    assert.equal(get(standbySnap({ fenced: { at: 'x', reason: 'y' } }), '/replica'), 503);
  });

  test('/read-only takes the primary or a healthy standby', () => {
    assert.equal(get(snap(), '/read-only'), 200);
    assert.equal(get(standbySnap(), '/read-only'), 200);
    assert.equal(get(snap({ local: { reachable: false } }), '/read-only'), 503);
  });

  test('/health is 200 while PostgreSQL answers, on either role', () => {
    assert.equal(get(snap(), '/health'), 200);
    assert.equal(get(standbySnap(), '/health'), 200);
    assert.equal(get(snap({ local: { reachable: false } }), '/health'), 503);
    assert.equal(get(snap({ takenAt: NOW - 10_000 }), '/health'), 503);
  });
});

describe('health answers: bad requests, /status, /metrics', () => {
  test('answers 404 on an unknown path and 405 with Allow on other methods', () => {
    assert.equal(get(snap(), '/nope'), 404);
    const a = answer(snap(), { method: 'POST', url: '/primary' }, CTX);
    assert.equal(a.status, 405);
    assert.equal(a.headers['allow'], 'GET, HEAD, OPTIONS');
    assert.equal(get(snap(), '/primary', 'DELETE'), 405);
  });

  test('answers 400 on a bad lag bound or a request target that is not a path', () => {
    assert.equal(get(standbySnap(), '/replica?lag=lots'), 400);
    assert.equal(get(standbySnap(), '/replica?lag=16XB'), 400);
    assert.equal(get(snap(), 'http://evil/primary'), 400);
    assert.equal(get(snap(), '*'), 400);
  });

  test('/status is JSON with role, timeline, lag, sync state, fence and degraded_since', () => {
    const s = snap({ degraded: { since: '2026-11-21T10:00:00.000Z', lsn: '0/3000060', standby: 'db2' } });
    const a = answer(s, { method: 'GET', url: '/status' }, { ...CTX, lastChange: NOW - 1000 });
    assert.equal(a.status, 200);
    const doc = JSON.parse(a.body) as Record<string, unknown>;
    assert.equal(doc['role'], 'primary');
    assert.equal(doc['timeline'], 1);
    assert.equal(doc['sync_state'], 'sync');
    assert.equal(doc['degraded_since'], '2026-11-21T10:00:00.000Z');
    assert.deepEqual(doc['checks'], { primary: 200, primary_reason: 'writable primary', standby: 503 });
    assert.equal(doc['last_change'], new Date(NOW - 1000).toISOString());
  });

  test('/status answers 200 with state unknown on a stale snapshot', () => {
    const a = answer(snap({ takenAt: NOW - 60_000 }), { method: 'GET', url: '/status' }, CTX);
    assert.equal(a.status, 200);
    assert.equal((JSON.parse(a.body) as { state: string }).state, 'unknown');
  });

  test('/metrics is Prometheus text with role, timeline, lag, sync, fenced and degraded-since', () => {
    const s = standbySnap(
      { degraded: { since: '2026-11-21T10:00:00.000Z', lsn: '0/1', standby: 'db2' } },
      4096,
    );
    const a = answer(s, { method: 'GET', url: '/metrics' }, CTX);
    assert.equal(a.status, 200);
    assert.match(a.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
    for (const [name, value] of [
      ['chef_ha_role', '0'],
      ['chef_ha_standby', '1'],
      ['chef_ha_primary', '0'],
      ['chef_ha_timeline', '1'],
      ['chef_ha_lag_bytes', '4096'],
      ['chef_ha_lag_seconds', '0.25'],
      ['chef_ha_sync', '0'],
      ['chef_ha_fenced', '0'],
      ['chef_ha_degraded_since_seconds', String(Date.parse('2026-11-21T10:00:00.000Z') / 1000)],
    ] as const) {
      assert.match(
        a.body,
        new RegExp(`^# TYPE ${name} gauge\\n${name}\\{node="db2"\\} ${value.replace('.', '\\.')}$`, 'm'),
        name,
      );
    }
  });

  test('parses lag bounds in bytes and 1024-based units', () => {
    assert.deepEqual(['1048576', '16MB', '16mb', '512 kB', '1GB', '0', 'x', '-1', '1PB'].map(parseLagBound), [
      1048576,
      16 * MiB,
      16 * MiB,
      512 * 1024,
      1024 * MiB,
      0,
      undefined,
      undefined,
      undefined,
    ]);
  });

  test('evaluates the snapshot age', () => {
    assert.equal(evaluateSnapshot(snap({ takenAt: NOW - 3000 }), CTX).known, true);
    assert.equal(evaluateSnapshot(snap({ takenAt: NOW - 3001 }), CTX).known, false);
  });
});

/** Sends raw bytes and returns the first response line (or '' when the server closes). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    const done = (): void => {
      resolve(out.split('\r\n')[0] ?? '');
    };
    s.on('error', done);
    s.on('close', done);
    s.write(bytes);
    setTimeout(() => s.end(), 200);
  });
}

/** The HTTP server on an ephemeral port with small limits; callers give the timing and the probe. */
function serve(
  o: Pick<HealthServerOptions, 'refreshMs' | 'staleMs' | 'recheckAfterGapMs' | 'probe' | 'now'>,
): Promise<RunningHealthServer> {
  return startHealthServer({
    listen: '127.0.0.1',
    port: 0,
    maxConnections: 16,
    requestTimeoutMs: 1000,
    onChange: () => {
      /* not asserted here */
    },
    onError: () => {
      /* not asserted here */
    },
    ...o,
  });
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
const unreachablePeer = (takenAt: number): HealthSnapshot =>
  snap({ takenAt, peer: { reachable: false, error: 'timeout expired' } });
const promotedPeer = (takenAt: number): HealthSnapshot =>
  snap({ takenAt, peer: { reachable: true, server: server({ timeline: 2, standbys: [] }) } });

/**
 * A health server on a clock the test moves, with the gap rule at 3 s and no refresh of its own (only
 * the first snapshot, the re-checks and GET /refresh probe); the probe gets the clock's time.
 */
async function gapServer(
  t: TestContext,
  probe: (now: number) => Promise<HealthSnapshot>,
): Promise<{
  readonly base: string;
  advance(ms: number): void;
  primary(): Promise<number>;
  refresh(): Promise<void>;
}> {
  let clock = Date.now();
  const running = await serve({
    refreshMs: 60_000,
    staleMs: 60_000,
    recheckAfterGapMs: 3000,
    probe: () => probe(clock),
    now: () => clock,
  });
  t.after(() => running.close());
  const base = `http://127.0.0.1:${running.port}`;
  return {
    base,
    advance(ms) {
      clock += ms;
    },
    primary: async () => (await fetch(`${base}/primary`)).status,
    async refresh() {
      await fetch(`${base}/refresh`);
      await settle();
    },
  };
}

/** A health server on the real clock whose probe counts its calls and always finds a healthy pair. */
async function countingServer(
  t: TestContext,
  refreshMs: number,
  staleMs: number,
): Promise<{ readonly base: string; readonly port: number; readonly probes: () => number }> {
  let probes = 0;
  const running = await serve({
    refreshMs,
    staleMs,
    recheckAfterGapMs: 60_000,
    probe: () => {
      probes += 1;
      return Promise.resolve({ ...snap(), takenAt: Date.now() });
    },
    now: () => Date.now(),
  });
  t.after(() => running.close());
  return { base: `http://127.0.0.1:${running.port}`, port: running.port, probes: () => probes };
}

describe('health HTTP server', () => {
  test('serves the snapshot, survives garbage requests, and answers 400/404/405', async (t) => {
    const { base, port, probes } = await countingServer(t, 50, 5000);
    assert.equal((await fetch(`${base}/primary`)).status, 200);
    assert.equal((await fetch(`${base}/replica`)).status, 503);
    assert.equal((await fetch(`${base}/primary`, { method: 'POST', body: 'x' })).status, 405);
    assert.equal((await fetch(`${base}/zzz`)).status, 404);
    assert.match(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(
      await raw(port, `GET /primary HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`),
      /^HTTP\/1\.1 431/,
    );
    assert.match(await raw(port, 'GET /primary HTTP/1.1\r\nContent-Length: abc\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await raw(port, '\x00\x01\x02\xff\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(
      await raw(port, 'GET /replica?lag=%zz HTTP/1.1\r\nHost: x\r\n\r\n'),
      /^HTTP\/1\.1 (400|503)/,
    );
    const head = await fetch(`${base}/primary`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    // Still serving after all of that.
    assert.equal((await fetch(`${base}/primary`)).status, 200);
    assert.ok(probes() >= 1);
  });

  test('fails closed when the probe stops refreshing the snapshot', async (t) => {
    let clock = Date.now();
    const running = await serve({
      refreshMs: 60_000,
      staleMs: 3000,
      recheckAfterGapMs: 60_000,
      probe: () => Promise.resolve({ ...snap(), takenAt: clock }),
      now: () => clock,
    });
    t.after(() => running.close());
    assert.equal((await fetch(`http://127.0.0.1:${running.port}/primary`)).status, 200);
    clock += 3001;
    assert.equal((await fetch(`http://127.0.0.1:${running.port}/primary`)).status, 503);
  });

  test('an old primary cut off and then reconnected answers 503 on /primary until it has probed its peer again', async (t) => {
    // While cut off, every probe finds the peer unreachable; after the heal the peer answers promoted.
    let healed = false;
    let releaseProbe: (() => void) | undefined;
    const s = await gapServer(t, (now) =>
      healed
        ? new Promise<HealthSnapshot>((resolve) => {
            releaseProbe = () => {
              resolve(promotedPeer(now));
            };
          })
        : Promise.resolve(unreachablePeer(now)),
    );
    // Checks keep coming: a primary whose standby is gone stays 200.
    assert.equal(await s.primary(), 200);
    s.advance(1000);
    assert.equal(await s.primary(), 200);
    // No request for 5 s (this node was cut off), then the link is back: the peer must be re-checked.
    s.advance(5000);
    healed = true;
    assert.equal(await s.primary(), 503);
    s.advance(100);
    assert.equal(await s.primary(), 503, 'still 503 while the re-check runs');
    assert.ok(releaseProbe, 'the re-check probe was started at once');
    releaseProbe();
    await settle();
    // The re-check found the peer promoted: 503 for that reason now.
    assert.equal(await s.primary(), 503);
    const status = (await (await fetch(`${s.base}/status`)).json()) as {
      checks: { primary_reason: string };
    };
    assert.match(status.checks.primary_reason, /writable primary too|newer timeline/);
  });

  test('after a gap, a peer that stays unreachable for recheckAfterGapMs is taken as gone: 200 comes back', async (t) => {
    const s = await gapServer(t, (now) => Promise.resolve(unreachablePeer(now)));
    s.advance(4000);
    assert.equal(await s.primary(), 503);
    await settle();
    assert.equal(await s.primary(), 503, 'one probe that did not reach the peer is not enough');
    // HAProxy's checks keep coming (no new gap) while the peer stays unreachable
    for (let i = 0; i < 3; i++) {
      s.advance(1000);
      assert.equal(await s.primary(), 503);
    }
    await s.refresh();
    assert.equal(await s.primary(), 200);
  });

  test('after a gap, a first re-check that loses its connection and a second that finds the peer promoted: never 200', async (t) => {
    let probes = 0;
    let afterGap = false;
    // the first probe after the heal loses its connection; the next one reaches the promoted peer
    const s = await gapServer(t, (now) => {
      probes += 1;
      return Promise.resolve(!afterGap || probes === 2 ? unreachablePeer(now) : promotedPeer(now));
    });
    s.advance(5000);
    afterGap = true;
    assert.equal(await s.primary(), 503);
    await settle();
    assert.equal(probes, 2);
    assert.equal(await s.primary(), 503, 'the lost connection leaves the re-check open');
    s.advance(1000);
    await s.refresh();
    assert.equal(probes, 3);
    assert.equal(await s.primary(), 503, 'the peer is promoted: 503 for that reason');
  });

  test('an old primary that saw its peer promoted stays 503 when its next probe of the peer is lost', async (t) => {
    // No gap in the requests: the re-check after a gap does not apply. The fault bench's case: right after
    // the heal of a partition the old primary saw the promoted peer (503), then one probe of the peer timed
    // out under load; answering from that snapshot alone gave 200 beside the promoted peer.
    const probes = [promotedPeer, unreachablePeer];
    const s = await gapServer(t, (now) => Promise.resolve((probes.shift() ?? unreachablePeer)(now)));
    assert.equal(await s.primary(), 503, 'the peer is on a newer timeline');
    s.advance(1000);
    await s.refresh();
    assert.equal(await s.primary(), 503, 'a lost probe of the peer does not undo what was seen');
    const status = (await (await fetch(`${s.base}/status`)).json()) as {
      checks: { primary_reason: string };
    };
    assert.match(status.checks.primary_reason, /was seen on a newer timeline \(2 > 1\)/);
  });

  test('GET /refresh takes a new snapshot at once (coalesced) and answers 204', async (t) => {
    const { base, probes } = await countingServer(t, 60_000, 120_000);
    assert.equal(probes(), 1, 'the first snapshot, taken before listening');
    const r = await fetch(`${base}/refresh`);
    assert.equal(r.status, 204);
    assert.equal(await r.text(), '');
    await settle();
    assert.equal(probes(), 2);
    assert.equal((await fetch(`${base}/refresh`, { method: 'POST' })).status, 405);
    assert.equal(probes(), 2);
  });
});
