/**
 * Exit codes of health-server and haproxy-config on the built CLI (no sandbox needed).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliRaw } from '../e2e/helpers.js';

describe('health-server and haproxy-config exit codes', () => {
  let dir: string;
  let config: string;
  let blocker: Server;
  let busyPort: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chef-ha-cli-health-'));
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    busyPort = (blocker.address() as { port: number }).port;
    config = join(dir, 'chef-ha.json');
    await writeFile(
      config,
      JSON.stringify({
        node: { name: 'chef-a', address: '127.0.0.1' },
        peer: { name: 'chef-b', address: '127.0.0.2' },
        health: { listen: '127.0.0.1', port: busyPort },
        haproxy: { stateFile: join(dir, 'state'), socket: join(dir, 'admin.sock') },
        stateDir: join(dir, 'state-dir'),
      }),
    );
  });
  after(async () => {
    await new Promise<void>((resolve) =>
      blocker.close(() => {
        resolve();
      }),
    );
    await rm(dir, { recursive: true, force: true });
  });

  test('haproxy-config prints the config (exit 0), and --output writes it with the DOWN seed', async () => {
    const r = await runCliRaw(['--config', config, 'haproxy-config']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^backend postgres_primary$/m);
    const out = join(dir, 'haproxy.cfg');
    const w = await runCliRaw(['--config', config, 'haproxy-config', '--output', out]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(await readFile(out, 'utf8'), r.stdout);
    assert.match(await readFile(join(dir, 'state'), 'utf8'), /^4 postgres_primary 2 chef-b 127\.0\.0\.2 0 /m);
  });

  test('health-server exits 5 and names the port when it cannot listen', async () => {
    const r = await runCliRaw(['--config', config, 'health-server'], 30_000);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busyPort}`));
    assert.match(r.stderr, /hint: .*health\.port/);
  });
});
