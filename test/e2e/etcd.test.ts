/**
 * The etcd client against the real etcd of Debian (/usr/bin/etcd, 3.4 on Debian 12), one member on
 * 127.0.0.1 in a temporary directory: the leader key is created only when absent, renewed under its
 * lease, gone once the lease expires, released at once; the term only moves forward; `pause` / `resume`
 * write and remove the paused key; `check` prints the worst-case RTO and refuses incoherent timings.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/core/config.js';
import { openEtcdDcs, type Dcs } from '../../src/monitor/dcs.js';
import { ETCD_BIN } from '../sandbox/etcd.js';
import { spawnDetached, stopPid, waitFor } from '../sandbox/proc.js';
import { reservePorts, releasePorts } from '../sandbox/ports.js';
import { makeTempDir, runCliRaw } from './helpers.js';

const rec = (node: string) => ({
  node,
  timeline: 1,
  lsn: '0/3000000',
  sync: true,
  renewedAt: new Date().toISOString(),
});

describe('etcd (real, one member) as the store of automatic failover', { timeout: 120_000 }, () => {
  let dir = '';
  let pid = 0;
  let base = 0;
  let endpoint = '';
  let raw: Record<string, unknown> = {};
  let config: Config;
  let dcs: Dcs;
  let other: Dcs;

  before(async () => {
    dir = await makeTempDir('chef-ha-etcd-');
    base = await reservePorts(dir, 1);
    endpoint = `http://127.0.0.1:${base}`;
    const peer = `http://127.0.0.1:${base + 1}`;
    pid = spawnDetached(
      [
        ETCD_BIN,
        '--name',
        'm1',
        '--data-dir',
        join(dir, 'data'),
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `m1=${peer}`,
      ],
      { logFile: join(dir, 'etcd.log'), cwd: dir },
    );
    const up = await waitFor(async () => {
      try {
        return (await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) })).status === 200;
      } catch {
        return false;
      }
    }, 30_000);
    assert.ok(up, `etcd answers on ${endpoint} (see ${dir}/etcd.log)`);
    raw = {
      node: { name: 'db1', address: '127.0.0.1' },
      peer: { name: 'db2', address: '127.0.0.2' },
      stateDir: join(dir, 'state'),
      failover: {
        automatic: true,
        ttlMs: 2000,
        loopMs: 500,
        selfFenceMarginMs: 1500,
        failsafeMs: 2000,
        peerQuietMs: 5000,
      },
      dcs: { etcd: { endpoints: [endpoint] } },
    };
    config = parseConfig(raw);
    const otherConfig = parseConfig({
      ...raw,
      node: { name: 'db2', address: '127.0.0.2' },
      peer: { name: 'db1', address: '127.0.0.1' },
    });
    dcs = await openEtcdDcs(config);
    other = await openEtcdDcs(otherConfig);
  });

  after(async () => {
    dcs?.close();
    other?.close();
    if (pid > 0) {
      await stopPid(pid, { mustContain: dir, graceMs: 3000 });
    }
    if (base > 0) {
      await releasePorts(dir, base);
    }
    if (dir !== '') {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the key is created once, renewed under its lease, expires, and the term only moves on', async () => {
    const empty = await dcs.read();
    assert.equal(empty.leader, undefined);
    assert.equal(empty.term, 0);
    const h = await dcs.acquire(0, rec('db1'));
    assert.ok(h, 'db1 takes the free key');
    assert.equal(h.term, 1);
    assert.equal(await other.acquire(0, rec('db2')), undefined, 'db2 cannot take a held key');
    assert.equal(await other.acquire(1, rec('db2')), undefined, 'nor with the current term');
    assert.ok(await dcs.renew(h, { ...rec('db1'), sync: false }), 'renewal under the lease');
    const held = await other.read();
    assert.equal(held.leader?.node, 'db1');
    assert.equal(held.leader?.sync, false);
    assert.equal(held.lastLeader?.node, 'db1');
    assert.ok((held.leaseRemainingMs ?? 0) > 0, 'the lease has time left');
    // no renewal: the lease (2 s) expires and the key goes
    const gone = await waitFor(async () => (await other.read()).leader === undefined, 10_000, 200);
    assert.ok(gone, 'the key is gone once the lease expired');
    assert.equal(await dcs.renew(h, rec('db1')), false, 'a renewal after expiry fails');
    const v = await other.read();
    assert.equal(v.lastLeader?.node, 'db1', 'last-leader outlives the lease');
    const h2 = await other.acquire(v.term, rec('db2'));
    assert.ok(h2, 'db2 takes the expired key');
    assert.equal(h2.term, 2);
    assert.equal(await dcs.acquire(1, rec('db1')), undefined, 'db1 cannot take it back with its old term');
    assert.equal(await dcs.release(h, rec('db1')), false, 'an expired lease releases nothing');
    assert.equal(await other.release(h2, rec('db2')), true, 'the holder releases its key');
    const released = await dcs.read();
    assert.equal(released.leader, undefined, 'released: the key is gone at once');
    assert.equal(released.lastLeader?.released, true);
  });

  test('pause and resume write and remove the paused key; status-free commands need no PostgreSQL', async () => {
    const file = join(dir, 'chef-ha.json');
    await writeFile(file, JSON.stringify(raw));
    const p = await runCliRaw(['--config', file, 'pause', '--reason', 'upgrade']);
    assert.equal(p.code, 0, p.stderr);
    const v = await dcs.read();
    assert.equal(v.paused?.by, 'db1');
    assert.equal(v.paused?.reason, 'upgrade');
    const r = await runCliRaw(['--config', file, 'resume']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await dcs.read()).paused, undefined);
  });

  test('pause without endpoints is a config error naming the fix', async () => {
    const file = join(dir, 'no-etcd.json');
    await writeFile(file, JSON.stringify({ ...raw, failover: {}, dcs: {} }));
    const p = await runCliRaw(['--config', file, 'pause']);
    assert.equal(p.code, 3);
    assert.match(p.stderr, /dcs\.etcd\.endpoints/);
  });

  test('an unreachable etcd makes pause fail (exit 5) with the endpoint named', async () => {
    const file = join(dir, 'bad-etcd.json');
    await writeFile(
      file,
      JSON.stringify({ ...raw, dcs: { etcd: { endpoints: [`http://127.0.0.1:${base + 2}`] } } }),
    );
    const p = await runCliRaw(['--config', file, 'pause']);
    assert.equal(p.code, 5, p.stderr);
    assert.match(p.stderr, new RegExp(`127\\.0\\.0\\.1:${base + 2}`));
  });
});
