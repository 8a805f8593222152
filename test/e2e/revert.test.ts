/**
 * revert: after setup-master, chef-server goes back to its embedded PostgreSQL with the original
 * recipe, chef-ha's settings removed, and the Chef data written since setup copied back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { upSandbox } from '../sandbox/index.js';
import {
  getClient,
  makeTempDir,
  registerClient,
  runCli,
  removeSandbox,
  type SandboxNode,
} from './helpers.js';

const execFileP = promisify(execFile);

describe('revert', { timeout: 300_000 }, () => {
  let dir: string;
  let a: SandboxNode;

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-revert-');
    const sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: false });
    a = sb.nodes[0]!;
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test('revert puts the original recipe back and chef-server runs on the embedded PostgreSQL with its data', async () => {
    const recipe = join(a.root, 'opt/chef-server/embedded/cookbooks/chef-server/recipes/postgresql.rb');
    const original = await readFile(recipe, 'utf8');
    assert.equal((await runCli(a, ['setup-master'])).code, 0);
    assert.equal((await registerClient(a, 'written-after-setup')).status, 201);

    const dry = await runCli(a, ['--dry-run', 'revert']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(await readFile(recipe, 'utf8'), /chef-ha recipe override/, 'dry-run changed nothing');

    const r = await runCli(a, ['revert']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(recipe, 'utf8'), original);
    assert.doesNotMatch(
      await readFile(join(a.root, 'etc/chef-server/chef-server.rb'), 'utf8'),
      /BEGIN chef-ha/,
    );
    assert.equal(existsSync(join(a.postgres.confDir, 'conf.d', 'chef-ha.conf')), false);
    assert.doesNotMatch(await readFile(join(a.postgres.confDir, 'pg_hba.conf'), 'utf8'), /BEGIN chef-ha/);
    const { stdout } = await execFileP(a.ctl, ['status', 'postgresql']);
    assert.match(stdout, /^run: postgresql: \(pid \d+\)/);
    assert.equal(
      (await getClient(a, 'written-after-setup')).status,
      200,
      'data written since setup was copied back',
    );
    assert.equal((await registerClient(a, 'after-revert')).status, 201);
    const backups = join(a.root, 'var/opt/chef-ha/backups');
    const folders = (await import('node:fs/promises')).readdir(backups);
    assert.ok((await folders).length >= 2);

    const again = await runCli(a, ['revert']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /has nothing of chef-ha to revert/);
  });
});
