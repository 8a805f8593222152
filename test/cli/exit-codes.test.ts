/**
 * The built CLI's exit codes and first error lines for bad configuration and usage (no sandbox needed).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, runCliRaw } from '../e2e/helpers.js';

describe('chef-ha-ctl exit codes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chef-ha-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('--help exits 0 and lists the commands', async () => {
    const r = await runCliRaw(['--help']);
    assert.equal(r.code, 0);
    for (const c of ['setup-master', 'setup-slave', 'failover', 'rejoin', 'switchover', 'status', 'check']) {
      assert.match(r.stdout, new RegExp(c));
    }
  });

  test('rejoin and switchover in londiste mode with neither node answering are refused (exit 4), nothing changed', async () => {
    const file = join(dir, 'londiste.json');
    await writeFile(
      file,
      JSON.stringify({
        node: { name: 'chef-a', address: '127.0.0.1' },
        peer: { name: 'chef-b', address: '127.0.0.2' },
        replication: { mode: 'londiste' },
        stateDir: join(dir, 'state-londiste'),
      }),
    );
    for (const c of ['rejoin', 'switchover']) {
      const r = await runCliRaw(['--config', file, '--yes', c]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, new RegExp(`${c}: .*does not answer.*; nothing was changed`));
    }
  });

  test('--version exits 0', async () => {
    const r = await runCliRaw(['--version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  });

  test('an unknown option is a usage error (exit 2)', async () => {
    const r = await runCliRaw(['status', '--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--bogus'/);
  });

  test('a missing config file exits 3 and says how to fix it', async () => {
    const r = await runCliRaw(['--config', join(dir, 'missing.json'), 'status']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /config file .*missing\.json does not exist/);
    assert.match(r.stderr, /hint: create it/);
  });

  test('an unreadable config file exits 3', async () => {
    const file = join(dir, 'unreadable.json');
    await writeFile(file, '{}');
    await chmod(file, 0o000);
    const r = await runCliRaw(['--config', file, 'status']);
    // root can read anything; as another user the read fails. Either way: exit 3 with a named problem.
    assert.equal(r.code, 3);
    assert.match(r.stderr, /unreadable\.json/);
  });

  test('invalid JSON exits 3 and names the file', async () => {
    const file = join(dir, 'broken.json');
    await writeFile(file, '{"node": {"name": "chef-a",}}');
    const r = await runCliRaw(['--config', file, 'status']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /broken\.json is not valid JSON/);
  });

  test('unknown keys and wrong types are all reported at once', async () => {
    const file = join(dir, 'wrong.json');
    await writeFile(
      file,
      JSON.stringify({
        node: { name: 'Chef A', address: 1 },
        peer: { name: 'chef-b', address: '127.0.0.1' },
        postgres: { port: 'x' },
        replicaton: {},
      }),
    );
    const r = await runCliRaw(['--config', file, 'status']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /4 problems/);
    assert.match(r.stderr, /node\.name: /);
    assert.match(r.stderr, /node\.address: .*expected string/);
    assert.match(r.stderr, /postgres\.port: .*expected number/);
    assert.match(r.stderr, /unknown key "replicaton"/);
  });

  test('CHEF_HA_CONFIG is used when --config is absent', async () => {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'status'], {
        env: { ...process.env, CHEF_HA_CONFIG: join(dir, 'from-env.json') },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('close', (code) => {
        resolve({ code: code ?? -1, stderr });
      });
    });
    assert.equal(r.code, 3);
    assert.match(r.stderr, /from-env\.json does not exist/);
  });

  test('monitor: a bad --max-loops is a usage error (2), --dry-run is refused (4), an invalid monitor key is a config error (3)', async () => {
    const file = join(dir, 'monitor.json');
    await writeFile(
      file,
      JSON.stringify({
        node: { name: 'chef-a', address: '127.0.0.1' },
        peer: { name: 'chef-b', address: '127.0.0.1' },
        stateDir: join(dir, 'state'),
      }),
    );
    const usage = await runCliRaw(['--config', file, 'monitor', '--max-loops', '0']);
    assert.equal(usage.code, 2, usage.stderr);
    assert.match(usage.stderr, /--max-loops needs a positive integer/);
    const dry = await runCliRaw(['--config', file, '--dry-run', 'monitor']);
    assert.equal(dry.code, 4, dry.stderr);
    assert.match(dry.stderr, /monitor has no dry run/);
    const bad = join(dir, 'monitor-bad.json');
    await writeFile(
      bad,
      JSON.stringify({
        node: { name: 'chef-a', address: '127.0.0.1' },
        peer: { name: 'chef-b', address: '127.0.0.1' },
        monitor: { loopMs: 5, degradeAfterMS: 1000 },
      }),
    );
    const cfg = await runCliRaw(['--config', bad, 'monitor']);
    assert.equal(cfg.code, 3, cfg.stderr);
    assert.match(cfg.stderr, /monitor\.loopMs: /);
    assert.match(cfg.stderr, /unknown key "degradeAfterMS"/);
  });

  test('guard is hidden from --help but answers its own --help', async () => {
    const all = await runCliRaw(['--help']);
    assert.match(all.stdout, /monitor/);
    assert.doesNotMatch(all.stdout, /\bguard\b/);
    const own = await runCliRaw(['guard', '--help']);
    assert.equal(own.code, 0);
    assert.match(own.stdout, /before PostgreSQL starts/);
  });
});
