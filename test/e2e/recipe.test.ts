/**
 * The postgresql recipe, executed as Ruby by the sandbox's chef-solo stand-in (docs/sandbox.md): the
 * faithful 11.1.7 original on the embedded layout, and chef-ha's override on the distribution layout
 * after setup-master / setup-slave, on the master and on a streaming standby.
 * Run: npm run build && npx tsx --test test/e2e/recipe.test.ts
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { upSandbox } from '../sandbox/index.js';
import { nodePaths } from '../sandbox/paths.js';
import { run, runAs, type RunResult } from '../sandbox/proc.js';
import { psqlRows, type PsqlTarget } from '../sandbox/standins/psql.js';
import { RECONFIGURE_HEADER, RECONFIGURE_LOG } from '../sandbox/standins/reconfigure.js';
import {
  getClient,
  getNode,
  inRecovery,
  makeTempDir,
  postmasterPid,
  putNode,
  registerClient,
  runCli,
  sql,
  waitFor,
  removeSandbox,
  type SandboxInfo,
  type SandboxNode,
} from './helpers.js';

interface ResourceLine {
  readonly resource: string;
  readonly action: string;
  /** 'updated', 'up to date', 'skipped due to not_if', ..., or 'stand-in' */
  readonly status: string;
}

const LINE = /^ {2}\* (.+) action (\w+)(?: \((.*)\))?$/;

function parseLine(line: string): ResourceLine {
  const m = LINE.exec(line);
  assert.ok(m?.[1] !== undefined && m[2] !== undefined, `not a resource line: ${line}`);
  const note = m[3];
  const status = note === undefined ? 'updated' : note.startsWith('skipped: stand-in') ? 'stand-in' : note;
  return { resource: m[1], action: m[2], status };
}

/** The resource lines of one recipe's section (`Recipe: chef-server::x` up to the next `Recipe:`). */
function section(out: string, recipe: string): ResourceLine[] {
  const lines = out.split('\n');
  const start = lines.indexOf(`Recipe: ${recipe}`);
  assert.ok(start >= 0, `no "Recipe: ${recipe}" in:\n${out}`);
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => l.startsWith('Recipe: '));
  return (end < 0 ? rest : rest.slice(0, end)).filter((l) => l.startsWith('  * ')).map(parseLine);
}

/** Every resource line of a run. */
function allResources(out: string): ResourceLine[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('  * '))
    .map(parseLine);
}

/** The output of each reconfigure a node ran so far (the sandbox's chef-server-ctl keeps them). */
async function reconfigureRuns(n: SandboxNode): Promise<string[]> {
  const text = await readFile(join(nodePaths(n.root).logDir, RECONFIGURE_LOG), 'utf8');
  return text
    .split(`${RECONFIGURE_HEADER} `)
    .slice(1)
    .map((run) => run.slice(run.indexOf('\n') + 1));
}

function assertQuiet(out: string, allowedUpdates: readonly string[] = []): void {
  for (const r of allResources(out)) {
    if (allowedUpdates.includes(r.resource)) {
      continue;
    }
    assert.ok(
      r.status === 'up to date' || r.status.startsWith('skipped due to ') || r.status === 'stand-in',
      `${r.resource} action ${r.action} was ${r.status}:\n${out}`,
    );
  }
}

describe('the postgresql recipe under the chef-solo stand-in', { timeout: 600_000 }, () => {
  let dir = '';
  let sb: SandboxInfo;
  let a: SandboxNode;
  let b: SandboxNode;

  const ctl = (n: SandboxNode, args: readonly string[], cwd = dir): Promise<RunResult> =>
    run([n.ctl, ...args], { cwd, timeoutMs: 180_000 });

  const embedded = (n: SandboxNode): PsqlTarget => ({
    osUser: 'postgres',
    bindir: n.postgres.bindir,
    socketDir: n.embeddedPostgres.socketDir,
    port: n.embeddedPostgres.port,
    user: n.embeddedPostgres.superuser,
  });

  const streaming = async (): Promise<boolean> =>
    (await sql(
      a,
      "SELECT state FROM pg_stat_replication WHERE application_name = 'chef_ha_chef_b'",
      'postgres',
    )) === 'streaming';

  before(async () => {
    dir = await makeTempDir('chef-ha-e2e-recipe-');
    sb = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: false });
    [a, b] = sb.nodes as [SandboxNode, SandboxNode];
  });

  after(async () => {
    await removeSandbox(dir);
  });

  test("the original recipe's resources ran in the 11.1.7 order on the node's first reconfigure", async () => {
    const [first] = await reconfigureRuns(a);
    assert.ok(first !== undefined);
    assert.match(first, /chef-server Reconfigured!\n$/);
    const data = '/var/opt/chef-server/postgresql/data';
    const start = 'execute[/opt/chef-server/bin/chef-server-ctl start postgresql]';
    assert.deepEqual(
      section(first, 'chef-server::postgresql').map((r) => [r.resource, r.action, r.status]),
      [
        ['user[opscode-pgsql]', 'create', 'stand-in'],
        ['directory[/var/log/chef-server/postgresql]', 'create', 'updated'],
        ['directory[/var/opt/chef-server/postgresql]', 'create', 'updated'],
        [`directory[${data}]`, 'create', 'updated'],
        [`link[${data}]`, 'create', 'skipped due to not_if'],
        ['file[/var/opt/chef-server/postgresql/.profile]', 'create', 'updated'],
        ['bash[add shm settings]', 'run', 'updated'],
        [`execute[/opt/chef-server/embedded/bin/initdb -D ${data}]`, 'run', 'updated'],
        [`template[${data}/postgresql.conf]`, 'create', 'updated'],
        [`template[${data}/pg_hba.conf]`, 'create', 'updated'],
        ['runit_service[postgresql]', 'enable', 'updated'],
        ['service[postgresql]', 'nothing', 'skipped due to action :nothing'],
        [start, 'run', 'updated'],
        ['execute[create opscode-pgsql database]', 'run', 'updated'],
        ['execute[create opscode_chef database]', 'run', 'updated'],
        ['execute[install_schema]', 'run', 'updated'],
        ['execute[install_schema]', 'nothing', 'skipped due to action :nothing'],
        [start, 'run', 'skipped due to only_if'],
        ['ruby_block[sleep 5]', 'run', 'updated'],
        ['chef_server_pg_user[opscode_chef]', 'create', 'updated'],
        ['chef_server_pg_user_table_access[opscode_chef]', 'create', 'updated'],
        ['chef_server_pg_user[opscode_chef_ro]', 'create', 'updated'],
        ['chef_server_pg_user_table_access[opscode_chef_ro]', 'create', 'updated'],
        ['execute[opt/chef-server/bin/chef-server-ctl stop postgresql]', 'run', 'skipped due to not_if'],
      ],
    );
    assert.match(
      first,
      /WARN: Cloning resource attributes for execute\[\/opt\/chef-server\/bin\/chef-server-ctl start postgresql\] from prior resource \(CHEF-3694\)/,
    );
    // what those resources left: the 11.1 cluster, its superuser, the NOSUPERUSER roles, the schema
    const t = embedded(a);
    assert.deepEqual(
      await psqlRows(t, 'template1', "select rolsuper from pg_roles where rolname = 'opscode-pgsql'"),
      [['t']],
    );
    assert.deepEqual(
      await psqlRows(
        t,
        'template1',
        "select datname from pg_database where datname like 'opscode%' order by 1",
      ),
      [['opscode-pgsql'], ['opscode_chef']],
    );
    assert.deepEqual(
      await psqlRows(
        t,
        'opscode_chef',
        "select has_table_privilege('opscode_chef', 'clients', 'INSERT'), has_table_privilege('opscode_chef_ro', 'clients', 'INSERT')",
      ),
      [['t', 'f']],
    );
    const p = nodePaths(a.root);
    assert.match(
      await readFile(join(p.root, 'etc', 'sysctl.conf'), 'utf8'),
      /^kernel\.shmmax = 17179869184$/m,
    );
    assert.match(
      await readFile(join(p.svDir, 'postgresql', 'run'), 'utf8'),
      /exec chpst -P -U opscode-pgsql -u opscode-pgsql \/opt\/chef-server\/embedded\/bin\/postgres -D \/var\/opt\/chef-server\/postgresql\/data\n/,
    );
  });

  test('a second reconfigure of the original reports every resource up to date or skipped (ruby_block runs every time, as in Chef 11)', async () => {
    const pm = await postmasterPid(b.embeddedPostgres.dataDir);
    const r = await ctl(b, ['reconfigure']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // chef-server-running.json changes once more after the first run, as in Chef 11: default.rb sets
    // bootstrap.enable to false once /var/opt/chef-server/bootstrapped exists
    assertQuiet(r.stdout, ['ruby_block[sleep 5]', 'file[/etc/chef-server/chef-server-running.json]']);
    assert.equal(
      await postmasterPid(b.embeddedPostgres.dataDir),
      pm,
      'the embedded cluster was not restarted',
    );
  });

  test('the stand-in refuses a recipe with an unknown resource: exit 1, naming it', async () => {
    const recipe = nodePaths(b.root).recipeFile;
    const original = await readFile(recipe, 'utf8');
    await writeFile(recipe, `${original}\npostgresql_tuning 'opscode_chef' do\n  work_mem '16MB'\nend\n`);
    try {
      const r = await ctl(b, ['reconfigure']);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stdout,
        /Recipe Compile Error in \/opt\/chef-server\/embedded\/cookbooks\/chef-server\/recipes\/postgresql\.rb/,
      );
      assert.match(
        r.stdout,
        /No resource or method named `postgresql_tuning' for `Chef::Recipe "postgresql"'/,
      );
      assert.match(r.stdout, /FATAL: NoMethodError: No resource or method named `postgresql_tuning'/);
      assert.doesNotMatch(r.stdout, /chef-server Reconfigured!/);
    } finally {
      await writeFile(recipe, original);
    }
    assert.equal((await ctl(b, ['reconfigure'])).code, 0);
  });

  test('with the embedded cluster stopped the 11.1.7 recipe starts it and stops it again; its relative path fails elsewhere than "/"', async () => {
    assert.equal((await ctl(b, ['stop', 'postgresql'])).code, 0);
    const fromRoot = await ctl(b, ['reconfigure'], b.root);
    assert.equal(fromRoot.code, 0, fromRoot.stdout);
    const steps = section(fromRoot.stdout, 'chef-server::postgresql');
    const status = (name: string): string[] => steps.filter((s) => s.resource === name).map((s) => s.status);
    assert.deepEqual(status('execute[create opscode_chef database]'), ['skipped due to not_if']);
    assert.deepEqual(status('execute[/opt/chef-server/bin/chef-server-ctl start postgresql]'), ['updated']);
    assert.deepEqual(status('chef_server_pg_user[opscode_chef]'), ['up to date']);
    assert.deepEqual(status('execute[opt/chef-server/bin/chef-server-ctl stop postgresql]'), ['updated']);
    const down = await ctl(b, ['status', 'postgresql']);
    assert.equal(down.code, 3, down.stdout);
    // from any other directory the missing leading "/" (upstream bug) fails the run, naming the resource
    const elsewhere = await ctl(b, ['reconfigure']);
    assert.equal(elsewhere.code, 1);
    assert.match(
      elsewhere.stdout,
      /Error executing action `run` on resource 'execute\[opt\/chef-server\/bin\/chef-server-ctl stop postgresql\]'\n={80}\n\nErrno::ENOENT/,
    );
    assert.equal((await ctl(b, ['status', 'postgresql'])).code, 0, 'the recipe started it before failing');
  });

  test('setup-master and setup-slave run the override: roles and grants on the master, everything on the fresh slave cluster', async () => {
    const m = await runCli(a, ['setup-master']);
    assert.equal(m.code, 0, m.stderr);
    const bundle = join(a.root, 'var/opt/chef-ha/join-bundle.tar.gz');
    const s = await runCli(b, ['setup-slave', '--bundle', bundle]);
    assert.equal(s.code, 0, s.stderr);
    await waitFor('streaming', streaming, 10_000);

    const override = (out: string): boolean => out.includes('execute[chef-ha check postgresql]');
    const onMaster = (await reconfigureRuns(a)).filter(override);
    assert.equal(onMaster.length, 1);
    const master = Object.fromEntries(
      section(onMaster[0] ?? '', 'chef-server::postgresql').map((r) => [r.resource, r.status]),
    );
    assert.deepEqual(master, {
      'runit_service[postgresql]': 'updated',
      'execute[chef-ha check postgresql]': 'skipped due to not_if',
      'execute[create opscode_chef database]': 'skipped due to not_if',
      'execute[install_schema]': 'skipped due to not_if',
      'bash[create database role opscode_chef]': 'updated',
      'bash[create database role opscode_chef_ro]': 'updated',
      'bash[grant opscode_chef write access]': 'updated',
      'bash[grant opscode_chef_ro read access]': 'updated',
    });
    // the slave's reconfigure ran on its own, still empty, writable cluster before the base backup
    const onSlave = (await reconfigureRuns(b)).filter(override);
    assert.equal(onSlave.length, 1);
    const slave = Object.fromEntries(
      section(onSlave[0] ?? '', 'chef-server::postgresql').map((r) => [r.resource, r.status]),
    );
    assert.deepEqual(slave, {
      'runit_service[postgresql]': 'updated',
      'execute[chef-ha check postgresql]': 'skipped due to not_if',
      'execute[create opscode_chef database]': 'updated',
      'execute[install_schema]': 'updated',
      'bash[create database role opscode_chef]': 'updated',
      'bash[create database role opscode_chef_ro]': 'updated',
      'bash[grant opscode_chef write access]': 'updated',
      'bash[grant opscode_chef_ro read access]': 'updated',
    });
    for (const n of [a, b]) {
      const st = await ctl(n, ['status', 'postgresql']);
      assert.equal(st.stdout, 'postgresql disabled\n');
      assert.equal(
        await postmasterPid(n.embeddedPostgres.dataDir),
        undefined,
        'the embedded cluster is stopped',
      );
    }
    assert.equal(
      await sql(
        a,
        "SELECT rolsuper, has_table_privilege('opscode_chef', 'clients', 'INSERT') FROM pg_roles WHERE rolname = 'opscode_chef'",
      ),
      'f|t',
    );
  });

  test('chef-server-ctl reconfigure on the streaming standby touches nothing in the database and leaves it streaming', async () => {
    const pm = await postmasterPid(b.postgres.dataDir);
    const r = await ctl(b, ['reconfigure']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertQuiet(r.stdout);
    const steps = section(r.stdout, 'chef-server::postgresql');
    for (const step of steps.filter((s) => /^(execute|bash)\[(create|install|grant)/.test(s.resource))) {
      assert.equal(step.status, 'skipped due to only_if', step.resource);
    }
    assert.equal(await inRecovery(b), true);
    assert.equal(await postmasterPid(b.postgres.dataDir), pm, 'the standby was not restarted');
    await waitFor('streaming after the standby reconfigure', streaming, 10_000);
  });

  test('a reconfigure on the master after setup changes nothing, and replication keeps working', async () => {
    const r = await ctl(a, ['reconfigure']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertQuiet(r.stdout);
    assert.equal((await registerClient(a, 'recipe-e2e-client')).status, 201);
    await waitFor(
      'the client on the slave',
      async () => (await getClient(b, 'recipe-e2e-client')).status === 200,
      5_000,
    );
    assert.equal((await putNode(a, 'recipe-e2e-node', { role: 'web' })).status, 201);
    await waitFor(
      'the node on the slave',
      async () => (await getNode(b, 'recipe-e2e-node')).status === 200,
      5_000,
    );
    await waitFor('streaming', streaming, 10_000);
  });

  test('in londiste mode the override grants pgq_writer to the chef role once that role exists', async () => {
    const rb = nodePaths(a.root).chefServerRb;
    const original = await readFile(rb, 'utf8');
    const grant = 'execute[grant pgq_writer to opscode_chef]';
    const statusOf = (out: string): string | undefined =>
      section(out, 'chef-server::postgresql').find((s) => s.resource === grant)?.status;
    await writeFile(rb, `${original}postgresql['chef_ha_mode'] = 'londiste'\n`);
    try {
      const without = await ctl(a, ['reconfigure']);
      assert.equal(without.code, 0, without.stdout);
      assert.equal(statusOf(without.stdout), 'skipped due to only_if');
      await sql(a, 'CREATE ROLE pgq_writer NOLOGIN', 'postgres');
      const first = await ctl(a, ['reconfigure']);
      assert.equal(first.code, 0, first.stdout);
      assert.equal(statusOf(first.stdout), 'updated');
      assert.equal(await sql(a, "SELECT pg_has_role('opscode_chef', 'pgq_writer', 'MEMBER')"), 't');
      const again = await ctl(a, ['reconfigure']);
      assert.equal(statusOf(again.stdout), 'skipped due to not_if');
      assertQuiet(again.stdout);
    } finally {
      await writeFile(rb, original);
      await sql(a, 'DROP ROLE IF EXISTS pgq_writer', 'postgres');
    }
    const streamingMode = await ctl(a, ['reconfigure']);
    assert.equal(statusOf(streamingMode.stdout), undefined, 'no pgq_writer resource in streaming mode');
  });

  test('the override fails, naming its check, when the distribution cluster does not answer', async () => {
    const pgCtl = join(b.postgres.bindir, 'pg_ctl');
    const stop = await runAs('postgres', [pgCtl, '-D', b.postgres.dataDir, '-m', 'fast', '-w', 'stop'], {
      cwd: '/',
    });
    assert.equal(stop.code, 0, stop.stderr);
    try {
      const r = await ctl(b, ['reconfigure']);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stdout,
        /Error executing action `run` on resource 'execute\[chef-ha check postgresql\]'/,
      );
      assert.match(
        r.stdout,
        /FATAL: Mixlib::ShellOut::ShellCommandFailed: execute\[chef-ha check postgresql\] had an error/,
      );
    } finally {
      const start = await runAs(
        'postgres',
        [
          pgCtl,
          '-D',
          b.postgres.dataDir,
          '-o',
          `-c config_file=${join(b.postgres.confDir, 'postgresql.conf')}`,
          '-l',
          b.postgres.logFile,
          '-w',
          'start',
        ],
        { cwd: '/' },
      );
      assert.equal(start.code, 0, start.stderr);
    }
    await waitFor('streaming again', streaming, 20_000);
  });
});
