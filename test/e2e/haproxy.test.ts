/**
 * HAProxy 2.6 with the config of `chef-ha-ctl haproxy-config`, on the sandbox: servers start DOWN (the
 * server-state seed) so no connection reaches the standby before its first check; only the primary gets
 * Chef API and SQL traffic; reads go to the standby; `failover` puts the old master in maint through the
 * runtime API and traffic moves to the new primary.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import {
  inRecovery,
  runCli,
  setUpStreamingPair,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';
import {
  configureProxy,
  connectMany,
  healthStatus,
  serverStates,
  sessionsByServer,
  startHaproxy,
  startHealthServer,
  type Daemon,
  type ProxyPorts,
} from './proxy-helpers.js';

const execFileP = promisify(execFile);

async function putNodeVia(port: number, name: string): Promise<number> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/nodes/${name}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, chef_environment: '_default', json_class: 'Chef::Node', run_list: [] }),
      signal: AbortSignal.timeout(5_000),
    });
    await r.text();
    return r.status;
  } catch {
    return 0;
  }
}

/**
 * Connects to both frontends from the moment HAProxy listens, with 8 workers in parallel for 1 s
 * (HAProxy 2.6 runs its first checks within about 100 ms of listening: the window is short).
 */
async function burstFromStart(p: ProxyPorts): Promise<number> {
  let n = 0;
  await waitFor('HAProxy to listen', async () => (await connectMany(p.postgres, 1, 0)) === 1, 20_000, 2);
  const until = Date.now() + 1_000;
  const worker = async (port: number): Promise<void> => {
    while (Date.now() < until) {
      const ok = await connectMany(port, 1, 2);
      n += ok;
    }
  };
  await Promise.all([1, 2, 3, 4].flatMap(() => [worker(p.postgres), worker(p.chefApi)]));
  return n;
}

/** The session totals per server once two reads 300 ms apart agree (nothing is still being forwarded). */
async function quietSessions(sock: string): Promise<Map<string, number>> {
  let last = await sessionsByServer(sock);
  const settled = await waitFor(
    'HAProxy session totals to stand still',
    async () => {
      await new Promise((r) => setTimeout(r, 300));
      const now = await sessionsByServer(sock);
      const same = [...now].every(([k, v]) => last.get(k) === v) && now.size === last.size;
      last = now;
      return same ? now : undefined;
    },
    20_000,
    0,
  );
  assert.ok(settled);
  return settled;
}

/** The first non-empty answer of `show servers state`, polled every 2 ms from the proxy's start. */
async function firstStates(p: ProxyPorts): Promise<Map<string, { op: number; admin: number }>> {
  const m = await waitFor(
    'the runtime API',
    async () => {
      const states = await serverStates(p.socket).catch(
        () => new Map<string, { op: number; admin: number }>(),
      );
      return states.size > 0 ? states : undefined;
    },
    20_000,
    2,
  );
  assert.ok(m);
  return m;
}

describe('HAProxy in front of the pair', { timeout: 600_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;
  let p: ProxyPorts;
  const daemons: Daemon[] = [];
  let proxy: Daemon | undefined;

  before(async () => {
    ({ dir, sb, a, b } = await setUpStreamingPair('chef-ha-e2e-haproxy-', { sync: false }));
    p = await configureProxy(sb, dir);
    for (const n of [a, b]) {
      daemons.push(startHealthServer(n));
    }
    await waitFor('/primary 200 on chef-a', async () => (await healthStatus(a, '/primary')) === 200, 20_000);
    await waitFor('/replica 200 on chef-b', async () => (await healthStatus(b, '/replica')) === 200, 20_000);
  });

  after(async () => {
    await proxy?.stop();
    for (const d of daemons) {
      await d.stop();
    }
    await removeSandbox(dir);
  });

  test('haproxy-config renders a config HAProxy 2.6 accepts, and a DOWN server-state seed', async () => {
    const r = await runCli(a, ['haproxy-config', '--output', p.cfg]);
    assert.equal(r.code, 0, r.stderr);
    const { stdout, stderr } = await execFileP('haproxy', ['-c', '-f', p.cfg]);
    assert.match(stdout + stderr, /Configuration file is valid/);
    assert.match(stderr, /postgres_primary\/chef-b is DOWN, changed from server-state/);
    // Either node renders the same file.
    const fromB = await runCli(b, ['haproxy-config']);
    const fromA = await runCli(a, ['haproxy-config']);
    assert.equal(fromB.stdout, fromA.stdout);
  });

  test('without the seed, HAProxy 2.6 starts the standby UP before its first check (measured, not asserted)', async () => {
    await rm(p.stateFile);
    const control = startHaproxy(p.cfg);
    try {
      // The first answer of the runtime API: servers that have not been checked yet show check status 1 (INI).
      const first = await firstStates(p);
      const n = await burstFromStart(p);
      const s = await sessionsByServer(p.socket);
      console.log(
        `control: first state of postgres_primary/chef-b op=${first.get('postgres_primary/chef-b')?.op}; ${n} connections, to chef-b: ${s.get('postgres_primary/chef-b')} SQL, ${s.get('chef_api/chef-b')} Chef API`,
      );
    } finally {
      await control.stop();
    }
  });

  test('with the seed, no connection reaches the standby, even in the first second', async () => {
    const r = await runCli(a, ['haproxy-config', '--output', p.cfg]);
    assert.equal(r.code, 0, r.stderr);
    proxy = startHaproxy(p.cfg);
    // From the first moment the proxy answers, the standby (health 503) is DOWN: the seed is applied
    // while the configuration loads, before any listener opens.
    const first = await firstStates(p);
    for (const k of ['chef_api/chef-b', 'postgres_primary/chef-b']) {
      assert.equal(first.get(k)?.op, 0, `${k} at start: ${JSON.stringify([...first])}`);
    }
    const n = await burstFromStart(p);
    const s = await sessionsByServer(p.socket);
    console.log(
      `seeded: ${n} connections, to chef-a ${s.get('postgres_primary/chef-a')} SQL + ${s.get('chef_api/chef-a')} API`,
    );
    assert.equal(s.get('postgres_primary/chef-b'), 0, proxy.log());
    assert.equal(s.get('chef_api/chef-b'), 0, proxy.log());
    assert.ok((s.get('postgres_primary/chef-a') ?? 0) > 0);
  });

  test('only the primary gets Chef API and SQL traffic; reads go to the standby', async () => {
    await waitFor(
      'chef-a UP',
      async () => (await serverStates(p.socket)).get('chef_api/chef-a')?.op === 2,
      10_000,
    );
    await waitFor(
      'chef-b UP for reads',
      async () => (await serverStates(p.socket)).get('postgres_readonly/chef-b')?.op === 2,
      10_000,
    );
    // The previous test's burst can still be draining (connections accepted but not yet forwarded, on a
    // busy machine): count from when the session totals stand still.
    const before = await quietSessions(p.socket);
    assert.equal(await putNodeVia(p.chefApi, 'via-proxy-1'), 201);
    await connectMany(p.postgres, 20);
    await connectMany(p.postgresReadOnly, 20);
    const s = await sessionsByServer(p.socket);
    const delta = (k: string): number => (s.get(k) ?? 0) - (before.get(k) ?? 0);
    assert.deepEqual(
      [
        delta('chef_api/chef-a'),
        delta('chef_api/chef-b'),
        delta('postgres_primary/chef-a'),
        delta('postgres_primary/chef-b'),
      ],
      [1, 0, 20, 0],
    );
    assert.deepEqual([delta('postgres_readonly/chef-b'), delta('postgres_readonly/chef-a')], [20, 0]);
  });

  test('failover puts the old master in maint through the runtime API and traffic moves to the new primary', async () => {
    const r = await runCli(b, ['failover', '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /fence-old-master-in-haproxy\s+done[^\n]*chef_api\/chef-a, postgres_primary\/chef-a/,
    );
    assert.equal(await inRecovery(b), false);
    const states = await serverStates(p.socket);
    for (const k of ['chef_api/chef-a', 'postgres_primary/chef-a', 'postgres_readonly/chef-a']) {
      assert.equal((states.get(k)?.admin ?? 0) & 1, 1, `${k} in maint: ${JSON.stringify([...states])}`);
    }
    const before = await sessionsByServer(p.socket);
    await waitFor(
      'a Chef API write through the proxy',
      async () => (await putNodeVia(p.chefApi, 'via-proxy-2')) === 201,
      15_000,
      100,
    );
    // The Chef API backend's check saw chef-b first; the PostgreSQL backend's own check may come a beat later.
    await waitFor(
      'postgres_primary/chef-b UP in HAProxy',
      async () => (await serverStates(p.socket)).get('postgres_primary/chef-b')?.op === 2,
      15_000,
      100,
    );
    await connectMany(p.postgres, 10);
    const s = await sessionsByServer(p.socket);
    assert.equal(
      s.get('chef_api/chef-a'),
      before.get('chef_api/chef-a'),
      'no Chef API connection to the old master',
    );
    assert.equal(s.get('postgres_primary/chef-a'), before.get('postgres_primary/chef-a'));
    assert.ok((s.get('postgres_primary/chef-b') ?? 0) >= 10);
    assert.equal(await healthStatus(a, '/primary'), 503, 'the fenced old master answers 503');
    await waitFor('/primary 200 on chef-b', async () => (await healthStatus(b, '/primary')) === 200, 10_000);
  });
});
