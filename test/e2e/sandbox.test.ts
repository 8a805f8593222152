/**
 * The sandbox reproduces the Chef Server 11 facts chef-ha relies on (DESIGN.md section 8,
 * shared/reference/chef-server-11.md). One sandbox is built in a fresh temp dir and always taken down.
 * Run: npx tsx --test test/e2e/sandbox.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseConfig } from '../../src/core/config.js';
import { downSandbox, readSandbox, upSandbox, type SandboxInfo, type SandboxNode } from '../sandbox/index.js';
import { FIXTURES_DIR, PG_BINDIR, nodePaths } from '../sandbox/paths.js';
import { allPids, cmdlineOf, isAlive, run, runAs, type RunResult } from '../sandbox/proc.js';
import { sha256File } from '../sandbox/standins/reconfigure.js';
import { psqlRows, type PsqlTarget } from '../sandbox/standins/psql.js';

const STATUS_LINE =
  /^(run|down): ([a-z-]+): (\(pid \d+\) )?\d+s(, normally (up|down))?; (run|down): log: (\(pid \d+\) )?\d+s(, normally up)?$/;
const SERVICES = [
  'bookshelf',
  'chef-expander',
  'chef-server-webui',
  'chef-solr',
  'erchef',
  'nginx',
  'postgresql',
  'rabbitmq',
];

let dir = '';
let sandbox: SandboxInfo | undefined;
let failed = false;

function node(i = 0): SandboxNode {
  const n = sandbox?.nodes[i];
  assert.ok(n, 'sandbox is not up');
  return n;
}

function ctl(n: SandboxNode, ...args: string[]): Promise<RunResult> {
  return run([n.ctl, ...args], { cwd: dir, timeoutMs: 60_000 });
}

function embedded(n: SandboxNode): PsqlTarget {
  return {
    osUser: 'postgres',
    bindir: PG_BINDIR,
    socketDir: n.embeddedPostgres.socketDir,
    port: n.embeddedPostgres.port,
    user: n.embeddedPostgres.superuser,
  };
}

async function api(
  n: SandboxNode,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const init: RequestInit = { method, signal: AbortSignal.timeout(10_000) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  const res = await fetch(`${n.chefApi}${path}`, init);
  const text = await res.text();
  return { status: res.status, json: text === '' ? null : (JSON.parse(text) as unknown) };
}

/** A scenario: marks the run failed so that `after` prints the sandbox's logs. */
function scenario(name: string, fn: () => Promise<void>): void {
  test(name, async () => {
    try {
      await fn();
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

async function tails(): Promise<void> {
  console.error(`\n--- sandbox dir: ${dir}`);
  for (const n of sandbox?.nodes ?? []) {
    const p = nodePaths(n.root);
    for (const f of [
      p.pgLogFile,
      join(p.embeddedLogDir, 'current'),
      join(p.erchefLogDir, 'current'),
      p.sshdLog,
      p.ctlCallsLog,
    ]) {
      const text = await readFile(f, 'utf8').catch(() => '(missing)');
      console.error(`--- ${f} (tail)\n${text.split('\n').slice(-15).join('\n')}`);
    }
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chef-ha-sandbox-'));
  try {
    sandbox = await upSandbox(dir, { nodes: 2, mode: 'streaming', sync: true });
  } catch (error) {
    failed = true;
    throw error;
  }
});

after(async () => {
  if (failed) {
    await tails();
  }
  if (dir !== '') {
    await downSandbox(dir);
    if (!failed) {
      await rm(dir, { recursive: true, force: true });
    }
  }
});

scenario('sandbox.json lists both nodes with distinct ports on loopback', async () => {
  const info = await readSandbox(dir);
  assert.equal(info.state, 'up');
  assert.equal(info.net, 'loopback');
  assert.deepEqual(
    info.nodes.map((n) => n.name),
    ['chef-a', 'chef-b'],
  );
  const ports = info.nodes.flatMap((n) => [
    n.postgres.port,
    n.embeddedPostgres.port,
    n.healthPort,
    n.sshPort,
    Number(new URL(n.chefApi).port),
  ]);
  assert.equal(new Set(ports).size, ports.length);
  assert.ok(info.nodes.every((n) => n.netns === null && n.postgres.host === '127.0.0.1'));
});

scenario('etc/chef-server holds the Chef Server 11 files with their modes and owners', async () => {
  const p = nodePaths(node().root);
  const names = (await readdir(p.etcDir)).sort();
  assert.deepEqual(names, [
    'admin.pem',
    'chef-server-running.json',
    'chef-server-secrets.json',
    'chef-server.rb',
    'chef-validator.pem',
    'chef-webui.pem',
  ]);
  const mode = async (f: string): Promise<number> => (await stat(f)).mode & 0o7777;
  assert.equal(await mode(p.etcDir), 0o775);
  for (const f of [
    'chef-server-secrets.json',
    'chef-validator.pem',
    'admin.pem',
    'chef-server-running.json',
  ]) {
    assert.equal(await mode(join(p.etcDir, f)), 0o600, f);
  }
  const webui = await stat(join(p.etcDir, 'chef-webui.pem'));
  assert.equal(webui.mode & 0o7777, 0o640);
  assert.equal(webui.uid, 0);
  const group = (await run(['getent', 'group', 'chef_server'])).stdout.split(':')[2];
  assert.equal(String(webui.gid), group);
  const secrets = JSON.parse(await readFile(p.secretsFile, 'utf8')) as {
    postgresql: { sql_password: string; sql_ro_password: string };
  };
  assert.match(secrets.postgresql.sql_password, /^[0-9a-f]{100}$/);
  assert.match(secrets.postgresql.sql_ro_password, /^[0-9a-f]{100}$/);
  assert.equal(await readFile(p.bootstrappedFile, 'utf8'), 'All your bootstraps are belong to Chef');
  assert.equal(await mode(p.bootstrappedFile), 0o600);
});

scenario('the installed postgresql.rb is the fixture and chef-ha.json accepts its sha256', async () => {
  const fixtureSha = await sha256File(join(FIXTURES_DIR, 'postgresql.rb'));
  for (const n of sandbox?.nodes ?? []) {
    const p = nodePaths(n.root);
    assert.equal(await sha256File(p.recipeFile), fixtureSha);
    const config = JSON.parse(await readFile(n.config, 'utf8')) as {
      chefServer: { originalRecipeSha256: string[] };
    };
    assert.deepEqual(config.chefServer.originalRecipeSha256, [fixtureSha]);
    for (const f of [
      'solo.rb',
      'dna.json',
      'show-config.json',
      'chef-server/recipes/default.rb',
      'chef-server/recipes/postgresql_disable.rb',
    ]) {
      assert.ok(existsSync(join(p.cookbooksDir, f)), f);
    }
  }
});

scenario(
  'the fixture recipe declares the 11.1.7 resources in order, missing leading slash included',
  async () => {
    const text = await readFile(join(FIXTURES_DIR, 'postgresql.rb'), 'utf8');
    const order = [
      /^user node\['chef_server'\]\['postgresql'\]\['username'\] do/m,
      /^directory postgresql_log_dir do/m,
      /^directory postgresql_dir do/m,
      /^directory postgresql_data_dir do/m,
      /^link postgresql_data_dir_symlink do/m,
      /^file File\.join\(node\['chef_server'\]\['postgresql'\]\['home'\], "\.profile"\) do/m,
      /^ {2}template "\/etc\/sysctl\.d\/90-postgresql\.conf" do/m,
      /^ {2}bash "add shm settings" do/m,
      /^execute "\/opt\/chef-server\/embedded\/bin\/initdb -D #\{postgresql_data_dir\}" do/m,
      /^template postgresql_config do/m,
      /^template pg_hba_config do/m,
      /^runit_service "postgresql" do/m,
      /^ {2}execute "\/opt\/chef-server\/bin\/chef-server-ctl start postgresql" do/m,
      /^execute "create #\{pg_user\} database" do/m,
      /^execute "create opscode_chef database" do/m,
      /^execute "install_schema" do/m,
      /^pg_start_state = pg_helper\.is_running\?/m,
      /^execute '\/opt\/chef-server\/bin\/chef-server-ctl start postgresql' do/m,
      /^ruby_block 'sleep 5' do/m,
      /^chef_server_pg_user 'opscode_chef' do/m,
      /^chef_server_pg_user_table_access 'opscode_chef' do/m,
      /^chef_server_pg_user 'opscode_chef_ro' do/m,
      /^chef_server_pg_user_table_access 'opscode_chef_ro' do/m,
      /^execute 'opt\/chef-server\/bin\/chef-server-ctl stop postgresql' do/m,
    ];
    let last = -1;
    for (const re of order) {
      const m = re.exec(text);
      assert.ok(m, `missing ${String(re)}`);
      assert.ok(m.index > last, `${String(re)} is out of order`);
      last = m.index;
    }
    assert.match(
      text,
      /not_if \{ !pg_helper\.is_running\? \|\| pg_helper\.database_exists\?\("opscode_chef"\) \}/,
    );
    assert.match(text, /notifies :run, "execute\[install_schema\]", :immediately/);
    assert.match(text, /not_if \{ pg_start_state \}/);
  },
);

scenario('chef-server-ctl status prints one runit line per service, sorted, and exits 0', async () => {
  const r = await ctl(node(), 'status');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(
    lines.map((l) => STATUS_LINE.exec(l)?.[2]),
    SERVICES,
  );
  for (const l of lines) {
    assert.match(l, /^run: [a-z-]+: \(pid \d+\) \d+s; run: log: \(pid \d+\) \d+s$/);
    const pid = Number(/\(pid (\d+)\)/.exec(l)?.[1]);
    assert.ok(await isAlive(pid), `${l}: pid not alive`);
  }
  const list = await ctl(node(), 'service-list');
  assert.deepEqual(
    list.stdout.trim().split('\n'),
    SERVICES.map((s) => `${s}*`),
  );
});

scenario(
  'chef-server-ctl answers unknown commands, help and extra arguments with the real exit codes',
  async () => {
    const unknown = await ctl(node(), 'frobnicate');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /^I don't know that command\.\n/);
    const help = await ctl(node(), 'help');
    assert.equal(help.code, 1);
    assert.match(help.stdout, /: command \(subcommand\)\n/);
    assert.match(help.stdout, /\nreindex\n {2}Reindex all server data\n/);
    const extra = await ctl(node(), 'reconfigure', 'now');
    assert.equal(extra.code, 2);
    assert.match(extra.stdout, /The command reconfigure does not accept any arguments/);
  },
);

scenario('reindex prints the 11.1 text with erchef up and fails with erchef stopped', async () => {
  const n = node();
  const ok = await ctl(n, 'reindex');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(
    ok.stdout,
    'Removing all index entries\nSending all data to be indexed again.  It may take some time before everything is available via search.\n',
  );
  const record = JSON.parse(await readFile(nodePaths(n.root).reindexFile, 'utf8')) as {
    counts: Record<string, number>;
  };
  assert.equal(record.counts['clients'], 2);
  const stop = await ctl(n, 'stop', 'erchef');
  assert.equal(stop.code, 0);
  assert.match(stop.stdout, /^ok: down: erchef: \d+s, normally up\n$/);
  const fail = await ctl(n, 'reindex');
  assert.notEqual(fail.code, 0);
  assert.match(fail.stderr, /no match of right hand side value pang/);
  const start = await ctl(n, 'start', 'erchef');
  assert.equal(start.code, 0);
  assert.match(start.stdout, /^ok: run: erchef: \(pid \d+\) \d+s\n$/);
});

scenario('opscode_chef has the 11.1 tables with the exact constraint and index names', async () => {
  const t = embedded(node());
  const indexes = (
    await psqlRows(
      t,
      'opscode_chef',
      "select indexname from pg_indexes where tablename in ('clients','nodes','osc_users') order by 1",
    )
  ).map((r) => r[0]);
  assert.deepEqual(indexes, [
    'clients_authz_id_key',
    'clients_pkey',
    'nodes_authz_id_key',
    'nodes_org_id_environment_index',
    'nodes_org_id_name_key',
    'nodes_pkey',
    'org_id_name_unique',
    'osc_users_authz_id_key',
    'osc_users_email_key',
    'osc_users_pkey',
    'osc_users_username_key',
  ]);
  const fks = await psqlRows(
    t,
    'opscode_chef',
    "select count(*) from pg_constraint where contype = 'f' and (conrelid::regclass::text in ('clients','nodes','osc_users') or confrelid::regclass::text in ('clients','nodes','osc_users'))",
  );
  assert.equal(fks[0]?.[0], '0');
  const storage = await psqlRows(
    t,
    'opscode_chef',
    "select attstorage from pg_attribute where attrelid = 'nodes'::regclass and attname = 'serialized_object'",
  );
  assert.equal(storage[0]?.[0], 'e');
  const tables = (
    await psqlRows(
      t,
      'opscode_chef',
      "select tablename from pg_tables where schemaname = 'public' order by 1",
    )
  ).map((r) => r[0]);
  for (const name of [
    'checksums',
    'cookbook_version_checksums',
    'cookbook_versions',
    'cookbooks',
    'data_bag_items',
    'data_bags',
    'environments',
    'roles',
    'sandboxed_checksums',
  ]) {
    assert.ok(tables.includes(name), name);
  }
  const roles = await psqlRows(
    t,
    'template1',
    "select rolname, rolsuper from pg_roles where rolname like 'opscode_chef%' order by 1",
  );
  assert.deepEqual(roles, [
    ['opscode_chef', 'f'],
    ['opscode_chef_ro', 'f'],
  ]);
});

scenario('bootstrap rows use the OSC org id, OSC-format ids and SPKI public keys', async () => {
  const t = embedded(node());
  const clients = await psqlRows(
    t,
    'opscode_chef',
    'select name, id, authz_id, org_id, validator, admin, pubkey_version, last_updated_by, left(public_key, 26) from clients order by name',
  );
  assert.deepEqual(
    clients.map((c) => [c[0], c[4], c[5], c[6]]),
    [
      ['chef-validator', 't', 'f', '0'],
      ['chef-webui', 'f', 't', '0'],
    ],
  );
  for (const c of clients) {
    assert.match(c[1] ?? '', /^000000000000[0-9a-f]{20}$/);
    assert.equal(c[2], c[1]);
    assert.equal(c[3], '00000000000000000000000000000000');
    assert.equal(c[7], '00000000000000000000000000005ced');
    assert.match(c[8] ?? '', /^-----BEGIN PUBLIC KEY-----/);
  }
  const users = await psqlRows(t, 'opscode_chef', 'select username, admin, id from osc_users');
  assert.deepEqual(
    users.map((u) => [u[0], u[1]]),
    [['admin', 't']],
  );
  assert.match(users[0]?.[2] ?? '', /^000000000000[0-9a-f]{20}$/);
  const envs = await psqlRows(t, 'opscode_chef', 'select name from environments');
  assert.deepEqual(envs, [['_default']]);
});

scenario(
  'the Chef API registers a client, refuses a duplicate, stores a node and answers 404 on unknown paths',
  async () => {
    const n = node();
    const created = await api(n, 'POST', '/clients', { name: 'web1.example.org' });
    assert.equal(created.status, 201);
    const body = created.json as { uri: string; private_key: string };
    assert.equal(body.uri, `${n.chefApi}/clients/web1.example.org`);
    assert.match(body.private_key, /^-----BEGIN RSA PRIVATE KEY-----/);
    assert.equal((await api(n, 'POST', '/clients', { name: 'web1.example.org' })).status, 409);
    const got = await api(n, 'GET', '/clients/web1.example.org');
    assert.equal(got.status, 200);
    assert.equal((got.json as { validator: boolean }).validator, false);
    const nodeDoc = {
      name: 'web1.example.org',
      chef_environment: '_default',
      run_list: ['recipe[base]'],
      normal: { a: 1 },
    };
    assert.equal((await api(n, 'PUT', '/nodes/web1.example.org', nodeDoc)).status, 201);
    assert.equal(
      (await api(n, 'PUT', '/nodes/web1.example.org', { ...nodeDoc, run_list: ['recipe[web]'] })).status,
      200,
    );
    const fetched = await api(n, 'GET', '/nodes/web1.example.org');
    assert.equal(fetched.status, 200);
    assert.deepEqual((fetched.json as { run_list: string[] }).run_list, ['recipe[web]']);
    const raw = await psqlRows(
      embedded(n),
      'opscode_chef',
      "select convert_from(serialized_object, 'UTF8') from nodes where name = 'web1.example.org'",
    );
    assert.equal((JSON.parse(raw[0]?.[0] ?? '{}') as { name: string }).name, 'web1.example.org');
    assert.equal((await api(n, 'GET', '/users/admin')).status, 200);
    assert.equal((await api(n, 'GET', '/users/nobody')).status, 404);
    assert.equal((await api(n, 'GET', '/nodes/nope')).status, 404);
    assert.equal((await api(n, 'GET', '/clients/nope')).status, 404);
    assert.equal((await api(n, 'GET', '/cookbooks')).status, 404);
  },
);

scenario('a write answers 503 while the database is read-only, and succeeds again afterwards', async () => {
  const n = node();
  const t = embedded(n);
  const terminate =
    "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = 'opscode_chef' and pid <> pg_backend_pid()";
  await psqlRows(t, 'template1', 'ALTER DATABASE opscode_chef SET default_transaction_read_only = on');
  await psqlRows(t, 'template1', terminate);
  try {
    const refused = await api(n, 'PUT', '/nodes/ro-test', { name: 'ro-test' });
    assert.equal(refused.status, 503);
    assert.equal((await api(n, 'POST', '/clients', { name: 'ro-client' })).status, 503);
    const status = await api(n, 'GET', '/_status');
    assert.deepEqual((status.json as { db: { reachable: boolean; writable: boolean } }).db.writable, false);
  } finally {
    await psqlRows(t, 'template1', 'ALTER DATABASE opscode_chef RESET default_transaction_read_only');
    await psqlRows(t, 'template1', terminate);
  }
  let status = 0;
  for (let i = 0; i < 5 && status !== 201; i++) {
    status = (await api(n, 'PUT', '/nodes/ro-test', { name: 'ro-test' })).status;
  }
  assert.equal(status, 201);
});

scenario('status postgresql shows down after the embedded cluster is stopped behind runit', async () => {
  const n = node(1);
  const stop = await runAs(
    'postgres',
    [join(PG_BINDIR, 'pg_ctl'), '-D', n.embeddedPostgres.dataDir, '-m', 'fast', '-w', 'stop'],
    { cwd: '/' },
  );
  assert.equal(stop.code, 0, stop.stderr);
  const r = await ctl(n, 'status', 'postgresql');
  assert.match(r.stdout, /^down: postgresql: \d+s, normally up; run: log: \(pid \d+\) \d+s\n$/);
  assert.equal(r.code, 3);
  const start = await ctl(n, 'start', 'postgresql');
  assert.equal(start.code, 0);
  assert.match(start.stdout, /^ok: run: postgresql: \(pid \d+\) \d+s\n$/);
});

scenario('reconfigure run a second time reports the database resources up to date or skipped', async () => {
  const r = await ctl(node(), 'reconfigure');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = r.stdout;
  assert.match(out, /chef-server Reconfigured!\n$/);
  assert.match(out, /\* execute\[create opscode_chef database\] action run \(skipped due to not_if\)/);
  assert.match(out, /\* execute\[create opscode-pgsql database\] action run \(skipped due to not_if\)/);
  assert.match(out, /\* execute\[install_schema\] action nothing/);
  assert.match(out, /initdb -D [^\]]+\] action run \(skipped due to not_if\)/);
  for (const u of ['opscode_chef', 'opscode_chef_ro']) {
    assert.match(out, new RegExp(`\\* chef_server_pg_user\\[${u}\\] action create \\(up to date\\)`));
    assert.match(
      out,
      new RegExp(`\\* chef_server_pg_user_table_access\\[${u}\\] action create \\(up to date\\)`),
    );
  }
  assert.match(
    out,
    /execute\[opt\/chef-server\/bin\/chef-server-ctl stop postgresql\] action run \(skipped due to not_if\)/,
  );
});

scenario('ssh reaches the peer with the generated keys and known_hosts', async () => {
  const n = node();
  const config = JSON.parse(await readFile(n.config, 'utf8')) as {
    peer: { ssh: { target: string; port: number; identityFile: string; knownHostsFile: string } };
  };
  const s = config.peer.ssh;
  const r = await run(
    [
      'ssh',
      '-i',
      s.identityFile,
      '-o',
      `UserKnownHostsFile=${s.knownHostsFile}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=5',
      '-p',
      String(s.port),
      s.target,
      'true',
    ],
    { timeoutMs: 20_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(s.port, node(1).sshPort);
});

scenario('every chef-ha.json passes parseConfig and points at its own node', async () => {
  for (const [i, n] of (sandbox?.nodes ?? []).entries()) {
    const config = parseConfig(JSON.parse(await readFile(n.config, 'utf8')) as unknown, n.config);
    assert.equal(config.node.name, n.name);
    assert.equal(config.peer.name, node((i + 1) % 2).name);
    assert.equal(config.postgres.port, n.postgres.port);
    assert.equal(config.postgres.manager, 'pg_ctl');
    assert.equal(config.replication.synchronous, true);
    assert.equal(config.chefServer.embeddedPostgres.port, n.embeddedPostgres.port);
    assert.deepEqual(config.peer.ssh?.ctl.slice(-2), ['--config', node((i + 1) % 2).config]);
    assert.ok(existsSync(config.postgres.dataDir) && existsSync(join(config.postgres.confDir, 'conf.d')));
  }
});

scenario('the distribution cluster is the empty Debian-style main cluster', async () => {
  const n = node();
  const conf = await readFile(join(n.postgres.confDir, 'postgresql.conf'), 'utf8');
  assert.match(conf, /^include_dir = 'conf\.d'/m);
  assert.match(conf, new RegExp(`^data_directory = '${n.postgres.dataDir}'`, 'm'));
  const t: PsqlTarget = {
    osUser: 'postgres',
    bindir: PG_BINDIR,
    socketDir: n.postgres.socketDir,
    port: n.postgres.port,
  };
  const dbs = (await psqlRows(t, 'postgres', 'select datname from pg_database order by 1')).map((r) => r[0]);
  assert.deepEqual(dbs, ['postgres', 'template0', 'template1']);
});

scenario('ctl-calls.log records every chef-server-ctl invocation', async () => {
  const lines = (await readFile(nodePaths(node().root).ctlCallsLog, 'utf8')).trim().split('\n');
  const calls = lines.map((l) => JSON.parse(l) as { argv: string[]; exitCode: number });
  assert.deepEqual(calls[0], { ...calls[0], argv: ['reconfigure'], exitCode: 0 });
  assert.ok(calls.some((c) => c.argv[0] === 'frobnicate' && c.exitCode === 1));
});

scenario('down stops every process of the sandbox and can run twice', async () => {
  const before = await readSandbox(dir);
  assert.ok(before.pids.length >= 2 * 18, `expected the recorded pids, got ${before.pids.length}`);
  await downSandbox(dir);
  await downSandbox(dir);
  for (const r of before.pids) {
    assert.equal(await isAlive(r.pid), false, `${r.what} (${r.pid}) still runs`);
  }
  const leftovers: string[] = [];
  for (const pid of await allPids()) {
    const cmd = await cmdlineOf(pid);
    if (cmd.includes(`${dir}/nodes/`)) {
      leftovers.push(`${pid} ${cmd}`);
    }
  }
  assert.deepEqual(leftovers, []);
  assert.equal((await readSandbox(dir)).state, 'down');
});
