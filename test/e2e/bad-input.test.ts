/**
 * Bad input and unsafe requests on a real sandbox: each gets a clear message naming the problem and the
 * fix, the DESIGN.md exit code, and nothing changed. Also: setup-slave killed in the middle of its base
 * backup completes when run again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { upSandbox } from '../sandbox/index.js';
import {
  inRecovery,
  makeTempDir,
  managedRoots,
  registerClient,
  runCli,
  runCliRaw,
  snapshotFiles,
  spawnCli,
  sql,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

const execFileP = promisify(execFile);

describe('bad input and unsafe requests', { timeout: 900_000 }, () => {
  let dir: string;
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;
  let bundle: string;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-bad-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: false });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
    bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
  });

  after(async () => {
    await removeSandbox(dir);
  });

  /** A copy of a node's config with some keys changed. */
  async function variant(
    node: SandboxNode,
    name: string,
    change: (c: Record<string, Record<string, unknown>>) => void,
  ): Promise<string> {
    const c = JSON.parse(await readFile(node.config, 'utf8')) as Record<string, Record<string, unknown>>;
    change(c);
    const file = join(dir, `${node.name}-${name}.json`);
    await writeFile(file, JSON.stringify(c, null, 2));
    return file;
  }

  async function assertRefusedUnchanged(
    node: SandboxNode,
    args: string[],
    code: number,
    pattern: RegExp,
  ): Promise<void> {
    const before = await snapshotFiles(managedRoots(node));
    const r = await runCliRaw(args);
    assert.equal(r.code, code, `exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.match(r.stderr, /hint: /);
    assert.deepEqual(await snapshotFiles(managedRoots(node)), before, 'nothing changed');
  }

  test('setup-master refuses when chef-server-ctl is missing', async () => {
    const cfg = await variant(a, 'noctl', (c) => {
      c['chefServer']!['ctl'] = '/nonexistent/chef-server-ctl';
    });
    await assertRefusedUnchanged(
      a,
      ['--config', cfg, '--yes', 'setup-master'],
      4,
      /chef-server-ctl not found.*nothing was changed/,
    );
  });

  test('setup-master refuses when the PostgreSQL binaries are missing', async () => {
    const cfg = await variant(a, 'nobin', (c) => {
      c['postgres']!['bindir'] = '/nonexistent/bin';
    });
    await assertRefusedUnchanged(
      a,
      ['--config', cfg, '--yes', 'setup-master'],
      4,
      /binaries are missing from \/nonexistent\/bin/,
    );
  });

  test('a second chef-ha-ctl is refused while one holds the lock', async () => {
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const stateDir = join(a.root, 'var/opt/chef-ha');
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      await writeFile(
        join(stateDir, 'chef-ha-ctl.lock'),
        JSON.stringify({ pid: holder.pid, command: 'setup-master', started: new Date().toISOString() }),
      );
      await assertRefusedUnchanged(
        a,
        ['--config', a.config, '--yes', 'setup-master'],
        4,
        new RegExp(`another chef-ha-ctl holds the lock \\(pid ${holder.pid}`),
      );
    } finally {
      holder.kill('SIGKILL');
    }
  });

  test('setup-master succeeds once the lock holder is gone (stale lock taken over)', async () => {
    const r = await runCli(a, ['setup-master']);
    assert.equal(r.code, 0, r.stderr);
    // Enough data that the base backup takes a moment (interrupted below).
    await sql(
      a,
      `CREATE TABLE padding AS SELECT g AS id, repeat(md5(g::text), 40) AS filler FROM generate_series(1, 250000) g`,
    );
  });

  test('setup-slave refuses a missing bundle with a usage error', async () => {
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'setup-slave', '--bundle', join(dir, 'nope.tar.gz')],
      2,
      /bundle file .*nope\.tar\.gz does not exist/,
    );
  });

  test('setup-slave refuses a corrupt bundle', async () => {
    const bad = join(dir, 'corrupt.tar.gz');
    await writeFile(bad, Buffer.from('this is not a gzip tar at all'));
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'setup-slave', '--bundle', bad],
      4,
      /corrupt or not a chef-ha join bundle/,
    );
  });

  async function repack(
    name: string,
    edit: (work: string) => Promise<void>,
    fixSums: boolean,
  ): Promise<string> {
    const work = join(dir, `repack-${name}`);
    await mkdir(work, { recursive: true });
    await tar.x({ file: bundle, cwd: work });
    await edit(work);
    if (fixSums) {
      const lines: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        for (const e of (await readdir(join(work, rel), { withFileTypes: true })).sort((x, y) =>
          x.name.localeCompare(y.name),
        )) {
          const p = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) {
            await walk(p);
          } else if (p !== 'SHA256SUMS') {
            lines.push(
              `${createHash('sha256')
                .update(await readFile(join(work, p)))
                .digest('hex')}  ${p}`,
            );
          }
        }
      };
      await walk('');
      await writeFile(
        join(work, 'SHA256SUMS'),
        lines.sort((x, y) => (x.slice(66) < y.slice(66) ? -1 : 1)).join('\n') + '\n',
      );
    }
    const out = join(dir, `${name}.tar.gz`);
    await tar.c({ gzip: true, file: out, cwd: work }, [
      'manifest.json',
      'SHA256SUMS',
      'secret',
      'etc-chef-server',
    ]);
    return out;
  }

  test('setup-slave refuses a bundle whose checksum does not match', async () => {
    const bad = await repack(
      'tampered',
      async (work) => {
        await writeFile(join(work, 'etc-chef-server', 'chef-validator.pem'), 'tampered\n');
      },
      false,
    );
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'setup-slave', '--bundle', bad],
      4,
      /fails its checksum: etc-chef-server\/chef-validator\.pem does not match/,
    );
  });

  test('setup-slave refuses a bundle from another PostgreSQL major', async () => {
    const bad = await repack(
      'major14',
      async (work) => {
        const m = JSON.parse(await readFile(join(work, 'manifest.json'), 'utf8')) as {
          postgres: { major: string };
        };
        m.postgres.major = '14';
        await writeFile(join(work, 'manifest.json'), JSON.stringify(m, null, 2));
      },
      true,
    );
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'setup-slave', '--bundle', bad],
      4,
      /runs PostgreSQL 14 but this node has PostgreSQL 15/,
    );
  });

  test('setup-slave refuses when the disk is too small for the base backup', async () => {
    const cfg = await variant(b, 'disk', (c) => {
      (c as Record<string, unknown>)['minFreeDiskBytes'] = 2 ** 52;
    });
    await assertRefusedUnchanged(
      b,
      ['--config', cfg, '--yes', 'setup-slave', '--bundle', bundle],
      4,
      /not enough free disk for the base backup/,
    );
  });

  test('setup-slave refuses a node that holds Chef data beyond the bootstrap rows', async () => {
    assert.equal((await registerClient(b, 'precious-client')).status, 201);
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'setup-slave', '--bundle', bundle],
      4,
      /holds Chef data beyond a fresh install's bootstrap rows \(clients: 1\).*--force/s,
    );
  });

  test('setup-slave refuses when the master does not answer', async () => {
    await execFileP('runuser', [
      '-u',
      'postgres',
      '--',
      `${a.postgres.bindir}/pg_ctl`,
      '-D',
      a.postgres.dataDir,
      '-m',
      'fast',
      '-w',
      'stop',
    ]);
    try {
      await assertRefusedUnchanged(
        b,
        ['--config', b.config, '--yes', 'setup-slave', '--force', '--bundle', bundle],
        4,
        /cannot reach the master's PostgreSQL/,
      );
    } finally {
      await execFileP('runuser', [
        '-u',
        'postgres',
        '--',
        `${a.postgres.bindir}/pg_ctl`,
        '-D',
        a.postgres.dataDir,
        '-o',
        `-c config_file=${a.postgres.confDir}/postgresql.conf`,
        '-l',
        a.postgres.logFile,
        '-w',
        'start',
      ]);
    }
  });

  test('setup-slave killed in the middle of the base backup completes when run again', async () => {
    const marker = join(b.root, 'var/opt/chef-ha/basebackup-in-progress');
    const child = spawnCli(b, ['setup-slave', '--force', '--bundle', bundle]);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const staging = `${b.postgres.dataDir}.chef-ha-incoming`;
    await waitFor(
      'the base backup to write its first files',
      async () =>
        existsSync(marker) &&
        /pg-basebackup/.test(stderr) &&
        (await readdir(staging).catch(() => [] as string[])).length > 0,
      120_000,
      5,
    );
    process.kill(-(child.pid ?? 0), 'SIGKILL');
    await new Promise((r) => child.on('close', r));
    assert.ok(existsSync(marker), 'killed while the base backup ran');
    assert.ok(existsSync(staging), 'the killed copy is left beside the data directory');
    assert.ok(
      existsSync(join(b.postgres.dataDir, 'PG_VERSION')),
      'the data directory itself was not touched',
    );
    const r = await runCli(b, ['setup-slave', '--force', '--bundle', bundle]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /remove-stale-copy\s+done/,
      'the unfinished copy beside the data directory was removed',
    );
    assert.equal(await inRecovery(b), true);
    assert.equal(existsSync(marker), false);
    const stateEntries = await readdir(join(b.root, 'var/opt/chef-ha'));
    assert.deepEqual(
      stateEntries.filter((n) => n.startsWith('incoming-')),
      [],
      'the killed run left its extracted bundle (keys, secret) in the state dir; the re-run removed it',
    );
    const backups = await readdir(join(b.root, 'var/opt/chef-ha/backups'));
    assert.ok(backups.length >= 1);
    const folders = backups.sort().map((n) => join(b.root, 'var/opt/chef-ha/backups', n));
    assert.ok(existsSync(join(folders[0]!, 'etc-chef-server')), 'etc backed up before it was replaced');
    assert.ok(
      folders.some((f) => existsSync(join(f, 'postgresql-data', 'PG_VERSION'))),
      'old data directory kept',
    );
  });

  test('setup-slave refuses to run on the pair’s current primary', async () => {
    const own = join(dir, 'own-bundle.tar.gz');
    const e = await runCli(a, ['export-bundle', '--output', own]);
    assert.equal(e.code, 0, e.stderr);
    // The bundle names chef-b as slave; run on chef-a with names swapped so only the primary check can refuse.
    const cfg = await variant(a, 'swapped', (c) => {
      const node = c['node']!;
      const peer = c['peer']!;
      const n = node['name'];
      node['name'] = peer['name'];
      peer['name'] = n;
      peer['postgresPort'] = b.postgres.port;
    });
    await assertRefusedUnchanged(
      a,
      ['--config', cfg, '--yes', 'setup-slave', '--bundle', own],
      4,
      /is the pair's current primary.*switchover/s,
    );
  });

  test('failover refuses on a node that is not a standby', async () => {
    await assertRefusedUnchanged(
      a,
      ['--config', a.config, '--yes', 'failover'],
      4,
      /not a standby: it is the primary/,
    );
  });

  test('failover refuses while the master is healthy and suggests switchover', async () => {
    await assertRefusedUnchanged(
      b,
      ['--config', b.config, '--yes', 'failover'],
      4,
      /is healthy: it answers as a writable primary.*switchover/s,
    );
    assert.equal(await inRecovery(b), true);
  });
});
