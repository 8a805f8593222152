/**
 * `chef-ha-ctl health-server` on both nodes of a streaming pair on the sandbox: Patroni-style answers from
 * real PostgreSQL 15, the monitor's degraded.json and the fence record, two primaries (both 503), and
 * garbage requests that must not crash it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setUpStreamingPair, waitFor, type SandboxNode, removeSandbox } from './helpers.js';
import { healthJson, healthStatus, startHealthServer, type Daemon } from './proxy-helpers.js';

const execFileP = promisify(execFile);

async function stateDirOf(n: SandboxNode): Promise<string> {
  return (JSON.parse(await readFile(n.config, 'utf8')) as { stateDir: string }).stateDir;
}

/** Sends raw bytes; returns the status line of the answer ('' when the server just closes). */
function raw(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const done = (): void => {
      resolve(out.split('\r\n')[0] ?? '');
    };
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', done);
    s.on('close', done);
    s.write(bytes);
    setTimeout(() => s.end(), 300);
  });
}

describe('health-server on a streaming pair', { timeout: 600_000 }, () => {
  let dir: string;
  let a: SandboxNode;
  let b: SandboxNode;
  const daemons: Daemon[] = [];

  before(async () => {
    ({ dir, a, b } = await setUpStreamingPair('chef-ha-e2e-health-', { sync: true }));
    for (const n of [a, b]) {
      daemons.push(startHealthServer(n));
    }
  });

  after(async () => {
    for (const d of daemons) {
      await d.stop();
    }
    await removeSandbox(dir);
  });

  test('the master answers 200 on /primary and the slave 200 on /replica, and not the other way round', async () => {
    await waitFor('/primary 200 on chef-a', async () => (await healthStatus(a, '/primary')) === 200, 20_000);
    await waitFor('/replica 200 on chef-b', async () => (await healthStatus(b, '/replica')) === 200, 20_000);
    assert.deepEqual(
      await Promise.all(
        ['/', '/primary', '/master', '/replica', '/standby', '/health'].map((p) => healthStatus(a, p)),
      ),
      [200, 200, 200, 503, 503, 200],
    );
    assert.deepEqual(
      await Promise.all(
        ['/', '/primary', '/master', '/replica', '/standby', '/health'].map((p) => healthStatus(b, p)),
      ),
      [503, 503, 503, 200, 200, 200],
    );
    assert.equal(await healthStatus(b, '/replica?lag=16MB'), 200);
    assert.equal(await healthStatus(a, '/primary', 'HEAD'), 200);
    assert.equal(await healthStatus(a, '/primary', 'OPTIONS'), 200);
    assert.equal(await healthStatus(b, '/primary', 'OPTIONS'), 503);
  });

  test('/status and /metrics report role, timeline, lag and the synchronous standby', async () => {
    const st = await healthJson(a, '/status');
    assert.equal(st['role'], 'primary');
    assert.equal(st['timeline'], 1);
    assert.equal(st['sync_state'], 'sync');
    const sb2 = await healthJson(b, '/status');
    assert.equal(sb2['role'], 'standby');
    assert.equal((sb2['lag'] as { bytes: number }).bytes >= 0, true);
    const metrics = await (await fetch(`http://127.0.0.1:${b.healthPort}/metrics`)).text();
    assert.match(metrics, /^chef_ha_role\{node="chef-b"\} 0$/m);
    assert.match(metrics, /^chef_ha_sync\{node="chef-b"\} 1$/m);
    assert.match(metrics, /^chef_ha_lag_bytes\{node="chef-b"\} \d+$/m);
  });

  test('shows the degraded record of the monitor in /status and /metrics', async () => {
    const file = join(await stateDirOf(a), 'degraded.json');
    const since = '2026-11-21T10:00:00.000Z';
    await writeFile(file, JSON.stringify({ since, lsn: '0/3000060', standby: 'chef-b' }));
    try {
      await waitFor(
        'degraded_since',
        async () => (await healthJson(a, '/status'))['degraded_since'] === since,
        10_000,
      );
      const metrics = await (await fetch(`http://127.0.0.1:${a.healthPort}/metrics`)).text();
      assert.match(
        metrics,
        new RegExp(`^chef_ha_degraded_since_seconds\\{node="chef-a"\\} ${Date.parse(since) / 1000}$`, 'm'),
      );
    } finally {
      await rm(file, { force: true });
    }
    await waitFor(
      'not degraded',
      async () => (await healthJson(a, '/status'))['degraded_since'] === null,
      10_000,
    );
  });

  test('a fenced node answers 503 on /primary although its PostgreSQL is writable', async () => {
    const file = join(await stateDirOf(a), 'fenced.json');
    await writeFile(file, JSON.stringify({ at: new Date().toISOString(), reason: 'test fence' }));
    try {
      await waitFor(
        '/primary 503 on fenced chef-a',
        async () => (await healthStatus(a, '/primary')) === 503,
        10_000,
      );
      const st = await healthJson(a, '/status');
      assert.match((st['checks'] as { primary_reason: string }).primary_reason, /fenced/);
    } finally {
      await rm(file, { force: true });
    }
    await waitFor('/primary 200 again', async () => (await healthStatus(a, '/primary')) === 200, 10_000);
  });

  test('bad requests get 400, 404 or 405 and never crash the server', async () => {
    const port = a.healthPort;
    assert.equal(await healthStatus(a, '/nope'), 404);
    assert.equal(await healthStatus(a, '/primary', 'POST'), 405);
    assert.equal(await healthStatus(a, '/primary', 'DELETE'), 405);
    assert.equal(await healthStatus(b, '/replica?lag=lots'), 400);
    for (const bytes of [
      'GARBAGE\r\n\r\n',
      'GET /primary HTTP/1.1\r\nContent-Length: nope\r\n\r\n',
      `GET /primary HTTP/1.1\r\nX: ${'y'.repeat(50_000)}\r\n\r\n`,
      Buffer.from([0, 1, 2, 255, 13, 10, 13, 10]),
      'GET /\x00 HTTP/1.1\r\n\r\n',
    ]) {
      assert.match(await raw(port, bytes), /^HTTP\/1\.1 4\d\d/);
    }
    // Many half-open connections, then normal service.
    await Promise.all(Array.from({ length: 50 }, () => raw(port, 'GET /primary HTTP/1.1\r\n')));
    assert.equal(await healthStatus(a, '/primary'), 200);
  });

  test('two writable primaries both answer 503', async () => {
    // Promote the standby behind chef-ha's back: the old master is not fenced.
    await execFileP(
      'runuser',
      ['-u', 'postgres', '--', join(b.postgres.bindir, 'pg_ctl'), '-D', b.postgres.dataDir, '-w', 'promote'],
      {
        cwd: '/',
      },
    );
    await waitFor('/primary 503 on chef-a', async () => (await healthStatus(a, '/primary')) === 503, 15_000);
    // chef-b answered 503 on /primary as a standby already: wait until its snapshot has seen the promotion.
    await waitFor(
      'chef-b to see two primaries',
      async () => (await healthJson(b, '/status'))['two_primaries'] === true,
      15_000,
    );
    assert.equal(await healthStatus(b, '/primary'), 503);
    const st = await healthJson(a, '/status');
    assert.equal(st['two_primaries'], true);
    const metrics = await (await fetch(`http://127.0.0.1:${b.healthPort}/metrics`)).text();
    assert.match(metrics, /^chef_ha_two_primaries\{node="chef-b"\} 1$/m);
  });
});
