/**
 * STAND-IN of `chef-server-ctl reconfigure`, i.e. of chef-solo running the chef-server cookbook's run list
 * (shared/reference/chef-server-11.md sections 0, 1, 4). Only what chef-ha touches is reproduced:
 * /etc/chef-server (secrets, pems, running json, modes), the postgresql recipe (the installed
 * `recipes/postgresql.rb` decides: the ORIGINAL 11.1.7 behaviour on the embedded cluster, or chef-ha's
 * override on the distribution cluster), erchef's database settings, the bootstrap rows and the
 * `bootstrapped` marker, and the runit services. Output imitates chef-solo's resource lines.
 *
 * A later issue replaces this module with a Ruby chef-solo stand-in that really runs the recipe file; keep
 * everything recipe-specific in here.
 *
 * Known differences from the real thing (also in docs/sandbox.md):
 * - the embedded cluster runs as OS user `postgres` (no `opscode-pgsql` account); its superuser role is
 *   `opscode-pgsql`, reached through a peer map; embedded tools get `-h <root>/tmp` explicitly;
 * - the pg_user LWRPs use the configured port (the real ones use libpq's default socket and port);
 * - `ruby_block[sleep 5]` does not sleep; `bash[add shm settings]` never touches the host's sysctl;
 * - nested `chef-server-ctl start/stop postgresql` calls are made in-process and not logged as ctl calls.
 */
import {
  createHash,
  createPublicKey,
  generateKeyPair,
  pbkdf2Sync,
  createHmac,
  randomBytes,
} from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import pg from 'pg';
import { FIXTURES_DIR, type NodePaths } from '../paths.js';
import { run, userIds } from '../proc.js';
import {
  bool,
  int,
  optStr,
  readAttributes,
  readOrGenerateSecrets,
  str,
  type Attributes,
  type Secrets,
} from './attributes.js';
import { ident, lit, psqlRows, psqlRun, psqlScript, type PsqlTarget } from './psql.js';
import {
  defineService,
  disableService,
  EMBEDDED_OS_USER,
  EMBEDDED_SUPERUSER,
  embeddedPostmaster,
  isEnabled,
  serviceStatus,
  svStart,
  svStop,
} from './runit.js';

/** The line chef-ha's recipe override carries; its presence selects the override behaviour. */
export const OVERRIDE_MARKER = '# chef-ha recipe override';
export const OSC_ORG_ID = '00000000000000000000000000000000';
export const BOOTSTRAP_REQUESTOR = '00000000000000000000000000005ced';
export const BOOTSTRAPPED_CONTENT = 'All your bootstraps are belong to Chef';

class ResourceFailure extends Error {
  constructor(
    readonly resource: string,
    readonly action: string,
    readonly exception: string,
    message: string,
  ) {
    super(message);
  }
}

/** chef-solo's formatter, reduced to what the tests and operators read. */
class Formatter {
  updated = 0;
  constructor(private readonly out: (line: string) => void) {}
  recipe(name: string): void {
    this.out(`Recipe: ${name}`);
  }
  upToDate(resource: string, action: string): void {
    this.out(`  * ${resource} action ${action} (up to date)`);
  }
  skipped(resource: string, action: string, guard: 'not_if' | 'only_if'): void {
    this.out(`  * ${resource} action ${action} (skipped due to ${guard})`);
  }
  changed(resource: string, action: string, ...details: string[]): void {
    this.updated++;
    this.out(`  * ${resource} action ${action}`);
    for (const d of details) {
      this.out(`    - ${d}`);
    }
  }
  nothing(resource: string): void {
    this.out(`  * ${resource} action nothing (skipped due to action :nothing)`);
  }
}

/** sha256 of a file's content. */
export async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/** An OSC object id: last 12 hex of the org id + 20 hex (chef_object:make_org_prefix_id). */
export function makeOscId(): string {
  return '000000000000' + createHash('md5').update(randomBytes(16)).digest('hex').slice(0, 20);
}

/** RSA 2048 key pair: PKCS#1 private PEM (as Chef 11 wrote) and SPKI public PEM (pubkey_version 0). */
export async function generateRsaKeyPair(): Promise<{ privatePem: string; publicPem: string }> {
  return new Promise((resolvePromise, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      },
      (err, publicPem, privatePem) => {
        if (err !== null) {
          reject(err);
        } else {
          resolvePromise({ privatePem, publicPem });
        }
      },
    );
  });
}

/** True when `password` matches a SCRAM-SHA-256 verifier from pg_authid (or an md5 one). */
export function passwordMatches(verifier: string, user: string, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined) {
    const salted = pbkdf2Sync(password, Buffer.from(m[2], 'base64'), Number(m[1]), 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    return createHash('sha256').update(clientKey).digest('base64') === m[3];
  }
  if (verifier.startsWith('md5')) {
    return (
      verifier ===
      'md5' +
        createHash('md5')
          .update(password + user)
          .digest('hex')
    );
  }
  return false;
}

interface Ctx {
  readonly p: NodePaths;
  readonly f: Formatter;
  readonly attrs: Attributes;
  readonly secrets: Secrets;
  readonly pgUid: { uid: number; gid: number };
}

async function ensureOwner(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
}

async function writeIfChanged(path: string, content: string, mode: number): Promise<boolean> {
  let old: string | null = null;
  try {
    old = await readFile(path, 'utf8');
  } catch {
    old = null;
  }
  await mkdir(dirname(path), { recursive: true });
  if (old === content) {
    await chmod(path, mode);
    return false;
  }
  await writeFile(path, content, { mode });
  await chmod(path, mode);
  return true;
}

/** `chef-server-ctl status postgresql` exit status, as PgHelper#is_running? reads it. */
async function pgIsRunning(p: NodePaths): Promise<boolean> {
  const s = await serviceStatus(p, 'postgresql');
  if (!s.exists || !s.enabled) {
    return true; // omnibus-ctl: absent or disabled service -> status exits 0
  }
  return s.up;
}

function embeddedTarget(ctx: Ctx): PsqlTarget {
  return {
    osUser: EMBEDDED_OS_USER,
    bindir: ctx.p.embeddedBin,
    socketDir: ctx.p.embeddedSocketDir,
    port: int(ctx.attrs, 'postgresql', 'port'),
    user: EMBEDDED_SUPERUSER,
  };
}

async function databaseExists(t: PsqlTarget, name: string): Promise<boolean> {
  const r = await psqlRun(t, 'template1', `select datname from pg_database where datname = ${lit(name)}`);
  return r.code === 0 && r.stdout.trim() === name;
}

async function schemaInstalled(t: PsqlTarget): Promise<boolean> {
  const rows = await psqlRows(t, 'opscode_chef', "select to_regclass('public.nodes') is not null");
  return rows[0]?.[0] === 't';
}

async function installSchema(t: PsqlTarget, resource: string): Promise<void> {
  const sql = await readFile(join(FIXTURES_DIR, 'schema.sql'), 'utf8');
  const r = await psqlScript(t, 'opscode_chef', sql);
  if (r.code !== 0) {
    throw new ResourceFailure(resource, 'run', 'Mixlib::ShellOut::ShellCommandFailed', r.stderr.trim());
  }
}

/** chef_server_pg_user: CREATE USER ... NOSUPERUSER, or ALTER USER when the password differs. */
async function pgUser(ctx: Ctx, t: PsqlTarget, user: string, password: string): Promise<void> {
  const resource = `chef_server_pg_user[${user}]`;
  const rows = await psqlRows(
    t,
    'template1',
    `select usesuper, coalesce(passwd, '') from pg_shadow where usename = ${lit(user)}`,
  );
  const row = rows[0];
  if (row === undefined) {
    const r = await psqlRun(
      t,
      'template1',
      `CREATE USER ${ident(user)} NOSUPERUSER ENCRYPTED PASSWORD ${lit(password)}`,
    );
    if (r.code !== 0) {
      throw new ResourceFailure(resource, 'create', 'PG::Error', r.stderr.trim());
    }
    ctx.f.changed(resource, 'create', `create postgres user ${user}`);
    return;
  }
  const superOk = row[0] === 'f';
  if (superOk && passwordMatches(row[1] ?? '', user, password)) {
    ctx.f.upToDate(resource, 'create');
    return;
  }
  const r = await psqlRun(
    t,
    'template1',
    `ALTER USER ${ident(user)} NOSUPERUSER ENCRYPTED PASSWORD ${lit(password)}`,
  );
  if (r.code !== 0) {
    throw new ResourceFailure(resource, 'create', 'PG::Error', r.stderr.trim());
  }
  ctx.f.changed(resource, 'create', `update postgres user ${user}`);
}

/** chef_server_pg_user_table_access: grants on opscode_chef.public, run when any is missing. */
async function pgUserTableAccess(
  ctx: Ctx,
  t: PsqlTarget,
  user: string,
  profile: 'write' | 'read',
): Promise<void> {
  const resource = `chef_server_pg_user_table_access[${user}]`;
  const tablePriv = profile === 'write' ? 'INSERT, SELECT, UPDATE, DELETE' : 'SELECT';
  const seqPriv = profile === 'write' ? 'SELECT, UPDATE' : 'SELECT';
  const check = `select
      has_database_privilege(${lit(user)}, 'opscode_chef', '${profile === 'write' ? 'TEMPORARY' : 'CONNECT'}')
      and not exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p')
        and not has_table_privilege(${lit(user)}, c.oid, '${profile === 'write' ? 'INSERT' : 'SELECT'}'))
      and exists (select 1 from pg_default_acl d join pg_namespace n on n.oid = d.defaclnamespace
        where n.nspname = 'public' and d.defaclobjtype = 'r' and array_to_string(d.defaclacl, ',') like ${lit(`%${user}=%`)})`;
  const rows = await psqlRows(t, 'opscode_chef', check);
  if (rows[0]?.[0] === 't') {
    ctx.f.upToDate(resource, 'create');
    return;
  }
  const u = ident(user);
  const sql = [
    profile === 'write'
      ? `GRANT CONNECT, TEMPORARY ON DATABASE opscode_chef TO ${u}`
      : `GRANT CONNECT ON DATABASE opscode_chef TO ${u}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO ${u}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ${seqPriv} ON SEQUENCES TO ${u}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ${tablePriv} ON TABLES TO ${u}`,
    `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ${u}`,
    `GRANT ${seqPriv} ON ALL SEQUENCES IN SCHEMA public TO ${u}`,
    `GRANT ${tablePriv} ON ALL TABLES IN SCHEMA public TO ${u}`,
  ].join(';\n');
  const r = await psqlScript(t, 'opscode_chef', sql + ';\n');
  if (r.code !== 0) {
    throw new ResourceFailure(resource, 'create', 'PG::Error', r.stderr.trim());
  }
  ctx.f.changed(resource, 'create', `grant ${profile} access on opscode_chef.public to ${user}`);
}

function renderEmbeddedPostgresqlConf(ctx: Ctx): string {
  const a = ctx.attrs['postgresql'] ?? {};
  const v = (k: string): string => String(a[k] ?? '');
  return `# PostgreSQL configuration file of the embedded cluster, rendered from postgresql.conf.erb
# (chef-ha sandbox STAND-IN of chef-server 11.1.7's template; only the keys the template renders).
# This file was generated by Chef for ${ctx.p.root}
# Local modifications will be overwritten.

listen_addresses = '${v('listen_address')}'
port = ${v('port')}
max_connections = ${v('max_connections')}
shared_buffers = ${v('shared_buffers')}
work_mem = ${v('work_mem')}
#checkpoint_segments = ${v('checkpoint_segments')}  # stand-in: removed in PostgreSQL 9.5, kept as a comment
checkpoint_timeout = ${v('checkpoint_timeout')}
checkpoint_completion_target = ${v('checkpoint_completion_target')}
checkpoint_warning = ${v('checkpoint_warning')}
effective_cache_size = ${v('effective_cache_size')}

datestyle = 'iso, mdy'
lc_messages = 'C'
lc_monetary = 'C'
lc_numeric = 'C'
lc_time = 'C'
default_text_search_config = 'pg_catalog.english'

# stand-in: the embedded 9.2 build's compiled-in socket directory is /tmp; re-rooted here
unix_socket_directories = '${ctx.p.embeddedSocketDir}'
`;
}

function renderEmbeddedHba(ctx: Ctx): string {
  const cidrs = ctx.attrs['postgresql']?.['md5_auth_cidr_addresses'];
  const list = Array.isArray(cidrs) ? (cidrs as readonly string[]) : ['127.0.0.1/32', '::1/128'];
  const user = str(ctx.attrs, 'postgresql', 'username');
  return `# PostgreSQL Client Authentication Configuration File, rendered from pg_hba.conf.erb
# (chef-ha sandbox STAND-IN of chef-server 11.1.2+'s template).
# This file was generated by Chef for ${ctx.p.root}
# Local modifications will be overwritten.

# TYPE  DATABASE    USER        CIDR-ADDRESS          METHOD
# stand-in: map=chef_standin lets OS user ${EMBEDDED_OS_USER} act as ${user} (no ${user} OS account here)
local   all       ${user}  peer map=chef_standin
${list.map((c) => `host    all       all   ${c}   md5`).join('\n')}
`;
}

async function originalPostgresql(
  ctx: Ctx,
  pgStartState: boolean,
  bootstrapEnable: boolean,
  cwd: string,
): Promise<void> {
  const { p, f } = ctx;
  const { uid, gid } = ctx.pgUid;
  const pgUser = str(ctx.attrs, 'postgresql', 'username');
  const dir = str(ctx.attrs, 'postgresql', 'dir');
  const dataDir = str(ctx.attrs, 'postgresql', 'data_dir');
  const logDir = str(ctx.attrs, 'postgresql', 'log_directory');
  const home = str(ctx.attrs, 'postgresql', 'home');
  f.recipe('chef-server::postgresql');
  f.upToDate(`user[${pgUser}]`, 'create');

  for (const [d, mode] of [
    [logDir, 0o755],
    [dir, 0o700],
    [dataDir, 0o700],
  ] as const) {
    const existed = existsSync(d);
    await mkdir(d, { recursive: true });
    await ensureOwner(d, uid, gid);
    if (d !== logDir) {
      await chmod(d, mode);
    }
    if (existed) {
      f.upToDate(`directory[${d}]`, 'create');
    } else {
      f.changed(`directory[${d}]`, 'create', `create new directory ${d}`);
    }
  }
  f.skipped(`link[${join(dir, 'data')}]`, 'create', 'not_if');
  const profile = join(home, '.profile');
  if (await writeIfChanged(profile, `PATH=${str(ctx.attrs, 'postgresql', 'user_path')}\n`, 0o644)) {
    await ensureOwner(profile, uid, gid);
    f.changed(`file[${profile}]`, 'create', `update content in file ${profile}`);
  } else {
    f.upToDate(`file[${profile}]`, 'create');
  }
  f.skipped('bash[add shm settings]', 'run', 'not_if');

  const initdb = `execute[${join(p.embeddedBin, 'initdb')} -D ${dataDir}]`;
  if (existsSync(join(dataDir, 'PG_VERSION'))) {
    f.skipped(initdb, 'run', 'not_if');
  } else {
    const r = await run(
      [
        'runuser',
        '-u',
        EMBEDDED_OS_USER,
        '--',
        join(p.embeddedBin, 'initdb'),
        '-D',
        dataDir,
        '-U',
        EMBEDDED_SUPERUSER,
        '-E',
        'UTF8',
        '--locale',
        'C',
      ],
      { cwd: '/' },
    );
    if (r.code !== 0) {
      throw new ResourceFailure(initdb, 'run', 'Mixlib::ShellOut::ShellCommandFailed', r.stderr.trim());
    }
    f.changed(initdb, 'run', `execute ${join(p.embeddedBin, 'initdb')} -D ${dataDir}`);
  }

  let notifyRestart = false;
  const shouldNotify = isEnabled(p, 'postgresql') && (await serviceStatus(p, 'postgresql')).up;
  for (const [file, content] of [
    [join(dataDir, 'postgresql.conf'), renderEmbeddedPostgresqlConf(ctx)],
    [join(dataDir, 'pg_hba.conf'), renderEmbeddedHba(ctx)],
  ] as const) {
    if (await writeIfChanged(file, content, 0o644)) {
      await ensureOwner(file, uid, gid);
      f.changed(`template[${file}]`, 'create', `update content in file ${file}`);
      notifyRestart ||= shouldNotify;
    } else {
      f.upToDate(`template[${file}]`, 'create');
    }
  }
  const ident = join(dataDir, 'pg_ident.conf');
  await writeIfChanged(
    ident,
    `# stand-in peer map (see pg_hba.conf)\nchef_standin  ${EMBEDDED_OS_USER}  ${pgUser}\nchef_standin  ${pgUser}  ${pgUser}\n`,
    0o600,
  );
  await ensureOwner(ident, uid, gid);

  const ha = bool(ctx.attrs, 'postgresql', 'ha');
  const created = await defineService(
    p,
    'postgresql',
    `#!/bin/sh\nexec 2>&1\nexec chpst -P -U ${pgUser} -u ${pgUser} ${join(p.embeddedBin, 'postgres')} -D ${join(dir, 'data')}\n`,
    ha,
  );
  if (created) {
    f.changed('runit_service[postgresql]', 'enable', `create symlink at ${join(p.serviceDir, 'postgresql')}`);
    if (!ha) {
      await svStart(p, 'postgresql'); // runsvdir picks the new service up
    }
  } else {
    f.upToDate('runit_service[postgresql]', 'enable');
  }
  if (notifyRestart) {
    await svStop(p, 'postgresql');
    await svStart(p, 'postgresql');
    f.changed('service[postgresql]', 'restart', 'restart service service[postgresql]');
  }

  if (bootstrapEnable) {
    await svStart(p, 'postgresql');
    f.changed(`execute[${p.ctl} start postgresql]`, 'run', `execute ${p.ctl} start postgresql`);
  }

  const t = embeddedTarget(ctx);
  const port = int(ctx.attrs, 'postgresql', 'port');
  const createdb = join(p.embeddedBin, 'createdb');
  const userDbRes = `execute[create ${pgUser} database]`;
  if (!(await pgIsRunning(p)) || (await databaseExists(t, pgUser))) {
    f.skipped(userDbRes, 'run', 'not_if');
  } else {
    const r = await run(
      [
        'runuser',
        '-u',
        EMBEDDED_OS_USER,
        '--',
        createdb,
        '-h',
        t.socketDir,
        '-U',
        EMBEDDED_SUPERUSER,
        '-T',
        'template0',
        '--port',
        String(port),
        pgUser,
      ],
      { cwd: '/' },
    );
    if (r.code !== 0) {
      throw new ResourceFailure(userDbRes, 'run', 'Mixlib::ShellOut::ShellCommandFailed', r.stderr.trim());
    }
    f.changed(userDbRes, 'run', `execute ${createdb} -T template0 --port ${port} ${pgUser}`);
  }
  const chefDbRes = 'execute[create opscode_chef database]';
  let notifySchema = false;
  if (!(await pgIsRunning(p)) || (await databaseExists(t, 'opscode_chef'))) {
    f.skipped(chefDbRes, 'run', 'not_if');
  } else {
    const r = await run(
      [
        'runuser',
        '-u',
        EMBEDDED_OS_USER,
        '--',
        createdb,
        '-h',
        t.socketDir,
        '-U',
        EMBEDDED_SUPERUSER,
        '-T',
        'template0',
        '--port',
        String(port),
        '-E',
        'UTF-8',
        'opscode_chef',
      ],
      { cwd: '/' },
    );
    if (r.code !== 0) {
      throw new ResourceFailure(chefDbRes, 'run', 'Mixlib::ShellOut::ShellCommandFailed', r.stderr.trim());
    }
    f.changed(chefDbRes, 'run', `execute ${createdb} -T template0 --port ${port} -E UTF-8 opscode_chef`);
    notifySchema = true;
  }
  const schemaRes = 'execute[install_schema]';
  // stand-in: also installs when the tables are missing (the real one only runs when notified)
  if (notifySchema || ((await databaseExists(t, 'opscode_chef')) && !(await schemaInstalled(t)))) {
    await installSchema(t, schemaRes);
    f.changed(schemaRes, 'run', `execute sqitch --db-user ${pgUser} deploy --verify`);
  } else {
    f.nothing(schemaRes);
  }

  const startRes = `execute[${p.ctl} start postgresql]`;
  if (!(await pgIsRunning(p))) {
    await svStart(p, 'postgresql');
    f.changed(startRes, 'run', `execute ${p.ctl} start postgresql`);
  } else {
    f.skipped(startRes, 'run', 'only_if');
  }
  f.changed('ruby_block[sleep 5]', 'run', 'execute the ruby block sleep 5 (stand-in: no sleep)');
  const pwd = ctx.secrets.postgresql;
  await pgUser_(ctx, t, 'opscode_chef', pwd.sql_password, 'write');
  await pgUser_(ctx, t, 'opscode_chef_ro', pwd.sql_ro_password, 'read');

  const stopRes = 'execute[opt/chef-server/bin/chef-server-ctl stop postgresql]';
  if (pgStartState) {
    f.skipped(stopRes, 'run', 'not_if');
  } else if (cwd === p.root) {
    // the relative path (upstream bug) only resolves when chef-solo runs from "/"
    await svStop(p, 'postgresql');
    f.changed(stopRes, 'run', 'execute opt/chef-server/bin/chef-server-ctl stop postgresql');
  } else {
    throw new ResourceFailure(
      stopRes,
      'run',
      'Errno::ENOENT',
      'No such file or directory - opt/chef-server/bin/chef-server-ctl stop postgresql',
    );
  }
}

async function pgUser_(
  ctx: Ctx,
  t: PsqlTarget,
  user: string,
  password: string,
  profile: 'write' | 'read',
): Promise<void> {
  await named(`chef_server_pg_user[${user}]`, 'create', () => pgUser(ctx, t, user, password));
  await named(`chef_server_pg_user_table_access[${user}]`, 'create', () =>
    pgUserTableAccess(ctx, t, user, profile),
  );
}

/** Runs a resource body; any error that is not already a ResourceFailure is reported against `resource`. */
async function named(resource: string, action: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (error instanceof ResourceFailure) {
      throw error;
    }
    throw new ResourceFailure(
      resource,
      action,
      'PG::Error',
      error instanceof Error ? error.message : String(error),
    );
  }
}

/** chef-ha's override recipe: distribution cluster, create only what is missing, nothing on a standby. */
async function overridePostgresql(ctx: Ctx): Promise<{ writable: boolean }> {
  const { p, f } = ctx;
  f.recipe('chef-server::postgresql (chef-ha override)');
  if (await disableService(p, 'postgresql')) {
    f.changed('runit_service[postgresql]', 'disable', `delete symlink ${join(p.serviceDir, 'postgresql')}`);
  } else {
    f.upToDate('runit_service[postgresql]', 'disable');
  }
  const bindir = optStr(ctx.attrs, 'postgresql', 'chef_ha_bindir');
  const socketDir = optStr(ctx.attrs, 'postgresql', 'chef_ha_socket_dir');
  const osUser = optStr(ctx.attrs, 'postgresql', 'chef_ha_os_user') ?? 'postgres';
  const checkRes = 'execute[chef-ha check postgresql]';
  if (bindir === undefined || socketDir === undefined) {
    throw new ResourceFailure(
      checkRes,
      'run',
      'RuntimeError',
      "postgresql['chef_ha_bindir'] and postgresql['chef_ha_socket_dir'] must be set in chef-server.rb",
    );
  }
  const t: PsqlTarget = { osUser, bindir, socketDir, port: int(ctx.attrs, 'postgresql', 'port') };
  const r = await psqlRun(t, 'template1', 'select pg_is_in_recovery()');
  if (r.code !== 0) {
    throw new ResourceFailure(
      checkRes,
      'run',
      'Mixlib::ShellOut::ShellCommandFailed',
      r.stderr.trim() || `psql exited ${r.code}`,
    );
  }
  const inRecovery = r.stdout.trim() === 't';
  f.upToDate(checkRes, 'run');
  const mode = optStr(ctx.attrs, 'postgresql', 'chef_ha_mode') ?? 'streaming';
  const names = [
    'execute[create opscode_chef database]',
    'execute[install_schema]',
    'chef_server_pg_user[opscode_chef]',
    'chef_server_pg_user_table_access[opscode_chef]',
    'chef_server_pg_user[opscode_chef_ro]',
    'chef_server_pg_user_table_access[opscode_chef_ro]',
  ];
  if (inRecovery) {
    for (const n of names) {
      f.skipped(n, n.startsWith('execute') ? 'run' : 'create', 'only_if');
    }
    return { writable: false };
  }
  const dbRes = 'execute[create opscode_chef database]';
  if (await databaseExists(t, 'opscode_chef')) {
    f.skipped(dbRes, 'run', 'not_if');
  } else {
    const c = await run(
      [
        'runuser',
        '-u',
        osUser,
        '--',
        join(bindir, 'createdb'),
        '-h',
        socketDir,
        '-p',
        String(t.port),
        '-T',
        'template0',
        '-E',
        'UTF-8',
        'opscode_chef',
      ],
      { cwd: '/' },
    );
    if (c.code !== 0) {
      throw new ResourceFailure(dbRes, 'run', 'Mixlib::ShellOut::ShellCommandFailed', c.stderr.trim());
    }
    f.changed(dbRes, 'run', `execute createdb -T template0 -E UTF-8 opscode_chef (${mode})`);
  }
  if (await schemaInstalled(t)) {
    f.skipped('execute[install_schema]', 'run', 'not_if');
  } else {
    await installSchema(t, 'execute[install_schema]');
    f.changed('execute[install_schema]', 'run', 'execute sqitch deploy --verify');
  }
  await pgUser_(ctx, t, 'opscode_chef', ctx.secrets.postgresql.sql_password, 'write');
  await pgUser_(ctx, t, 'opscode_chef_ro', ctx.secrets.postgresql.sql_ro_password, 'read');
  return { writable: true };
}

function renderErchefConfig(ctx: Ctx): string {
  const a = ctx.attrs;
  return `%% -*- mode: erlang -*-
%% erchef app.config, rendered from erchef.config.erb
%% (chef-ha sandbox STAND-IN: only the settings the Chef API stand-in reads)
[
 {chef_wm, [
     {ip, "${str(a, 'erchef', 'listen')}"},
     {port, ${int(a, 'erchef', 'port')}}
 ]},
 {chef_objects, [
     {s3_url, "https://127.0.0.1"}
 ]},
 {sqerl, [
     {db_host, "${str(a, 'postgresql', 'vip')}"},
     {db_port, ${int(a, 'postgresql', 'port')}},
     {db_user, "${str(a, 'postgresql', 'sql_user')}"},
     {db_pass, "${str(a, 'postgresql', 'sql_password')}"},
     {db_name, "opscode_chef"},
     {idle_check, 10000}
 ]}
].
`;
}

async function erchef(ctx: Ctx): Promise<void> {
  const { p, f } = ctx;
  f.recipe('chef-server::erchef');
  const changed = await writeIfChanged(p.erchefConfig, renderErchefConfig(ctx), 0o644);
  if (changed) {
    f.changed(`template[${p.erchefConfig}]`, 'create', `update content in file ${p.erchefConfig}`);
  } else {
    f.upToDate(`template[${p.erchefConfig}]`, 'create');
  }
  const created = await defineService(
    p,
    'erchef',
    `#!/bin/sh\nexec 2>&1\nexec node --import tsx test/sandbox/standins/chef-api.ts --root ${p.root}\n`,
  );
  const up = (await serviceStatus(p, 'erchef')).up;
  if (created || !up) {
    await svStart(p, 'erchef');
    f.changed('runit_service[erchef]', 'enable', 'start service erchef');
  } else if (changed) {
    await svStop(p, 'erchef');
    await svStart(p, 'erchef');
    f.changed('runit_service[erchef]', 'restart', 'restart service erchef');
  } else {
    f.upToDate('runit_service[erchef]', 'enable');
  }
}

async function placeholder(ctx: Ctx, svc: string): Promise<void> {
  const { p, f } = ctx;
  f.recipe(`chef-server::${svc}`);
  const created = await defineService(
    p,
    svc,
    `#!/bin/sh\nexec 2>&1\n# stand-in: placeholder for ${svc}\nexec sleep infinity\n`,
  );
  const up = (await serviceStatus(p, svc)).up;
  if (created || !up) {
    await svStart(p, svc);
    f.changed(`runit_service[${svc}]`, 'enable', `start service ${svc}`);
  } else {
    f.upToDate(`runit_service[${svc}]`, 'enable');
  }
}

/** Loads an existing pem's public key, or generates and writes a new key (bootstrap-chef-server). */
async function keyFor(ctx: Ctx, name: string, mode: number, group: number): Promise<string> {
  const file = join(ctx.p.etcDir, `${name}.pem`);
  if (existsSync(file)) {
    return createPublicKey(await readFile(file, 'utf8'))
      .export({ type: 'spki', format: 'pem' })
      .toString();
  }
  const { privatePem, publicPem } = await generateRsaKeyPair();
  await writeFile(file, privatePem, { mode });
  await chown(file, 0, group);
  await chmod(file, mode);
  return publicPem;
}

async function bootstrap(ctx: Ctx, writable: boolean): Promise<void> {
  const { p, f } = ctx;
  f.recipe('chef-server::bootstrap');
  const res = 'execute[boostrap-chef-server]';
  if (existsSync(p.bootstrappedFile)) {
    f.skipped(res, 'run', 'not_if');
    f.upToDate(`file[${p.bootstrappedFile}]`, 'create');
    return;
  }
  if (!writable) {
    f.skipped(res, 'run', 'only_if');
    return;
  }
  const chefGroup = (await userIds('chef_server').catch(() => ({ uid: 0, gid: 0 }))).gid;
  const admin = str(ctx.attrs, 'chef-server-webui', 'web_ui_admin_user_name');
  const validatorKey = await keyFor(ctx, 'chef-validator', 0o600, 0);
  const webuiKey = await keyFor(ctx, 'chef-webui', 0o640, chefGroup);
  const adminKey = await keyFor(ctx, admin, 0o600, 0);
  const client = new pg.Client({
    host: str(ctx.attrs, 'postgresql', 'vip'),
    port: int(ctx.attrs, 'postgresql', 'port'),
    user: str(ctx.attrs, 'postgresql', 'sql_user'),
    password: str(ctx.attrs, 'postgresql', 'sql_password'),
    database: 'opscode_chef',
    connectionTimeoutMillis: 5000,
    application_name: 'bootstrap-chef-server (stand-in)',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const now = new Date().toISOString().replace('T', ' ').replace('Z', '');
    const insertClient =
      'INSERT INTO clients ( id, authz_id, org_id, name, validator, admin, public_key, pubkey_version, last_updated_by, created_at, updated_at ) ' +
      'VALUES ($1, $1, $2, $3, $4, $5, $6, 0, $7, $8, $8) ON CONFLICT DO NOTHING';
    await client.query('BEGIN');
    await client.query(insertClient, [
      makeOscId(),
      OSC_ORG_ID,
      'chef-validator',
      true,
      false,
      validatorKey,
      BOOTSTRAP_REQUESTOR,
      now,
    ]);
    await client.query(insertClient, [
      makeOscId(),
      OSC_ORG_ID,
      'chef-webui',
      false,
      true,
      webuiKey,
      BOOTSTRAP_REQUESTOR,
      now,
    ]);
    const salt = randomBytes(30).toString('base64').slice(0, 29);
    await client.query(
      'INSERT INTO osc_users (id, authz_id, username, email, public_key, hashed_password, salt, hash_type, last_updated_by, created_at, updated_at, external_authentication_uid, recovery_authentication_enabled, admin) ' +
        "VALUES ($1, $1, $2, NULL, $3, $4, $5, 'bcrypt', $6, $7, $7, NULL, false, true) ON CONFLICT DO NOTHING",
      [
        makeOscId(),
        admin,
        adminKey,
        `$2a$12$${salt}${randomBytes(24).toString('base64').slice(0, 31)}`,
        `$2a$12$${salt}`,
        BOOTSTRAP_REQUESTOR,
        now,
      ],
    );
    const env = gzipSync(
      JSON.stringify({
        name: '_default',
        description: 'The default Chef environment',
        cookbook_versions: {},
        json_class: 'Chef::Environment',
        chef_type: 'environment',
        default_attributes: {},
        override_attributes: {},
      }),
    );
    await client.query(
      'INSERT INTO environments (id, authz_id, org_id, name, last_updated_by, created_at, updated_at, serialized_object) VALUES ($1, $1, $2, $3, $4, $5, $5, $6) ON CONFLICT DO NOTHING',
      [makeOscId(), OSC_ORG_ID, '_default', BOOTSTRAP_REQUESTOR, now, env],
    );
    await client.query('COMMIT');
  } catch (error) {
    throw new ResourceFailure(
      res,
      'run',
      'Mixlib::ShellOut::ShellCommandFailed',
      error instanceof Error ? error.message : String(error),
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  f.changed(res, 'run', 'execute bin/bootstrap-chef-server');
  const webui = join(p.etcDir, 'chef-webui.pem');
  await chown(webui, 0, chefGroup);
  await chmod(webui, 0o640);
  f.changed(
    `file[${webui}]`,
    'create',
    `change mode from '' to '0640'`,
    `change group from '' to 'chef_server'`,
  );
  await writeFile(p.bootstrappedFile, BOOTSTRAPPED_CONTENT, { mode: 0o600 });
  await chmod(p.bootstrappedFile, 0o600);
  f.changed(`file[${p.bootstrappedFile}]`, 'create', `create new file ${p.bootstrappedFile}`);
}

/** Ensures group and user chef_server exist (recipes/users.rb). */
async function ensureChefServerUser(): Promise<void> {
  if ((await run(['getent', 'group', 'chef_server'])).code !== 0) {
    await run(['groupadd', '--system', 'chef_server']);
  }
  if ((await run(['getent', 'passwd', 'chef_server'])).code !== 0) {
    await run([
      'useradd',
      '--system',
      '--gid',
      'chef_server',
      '--no-create-home',
      '--home-dir',
      '/opt/chef-server/embedded',
      '--shell',
      '/bin/sh',
      'chef_server',
    ]);
  }
}

/** Whether the installed recipe is chef-ha's override. */
export async function recipeIsOverride(p: NodePaths): Promise<boolean> {
  const text = await readFile(p.recipeFile, 'utf8');
  return text.split('\n').some((l) => l.trim() === OVERRIDE_MARKER);
}

/**
 * Runs the reconfigure stand-in; prints chef-solo-like lines through `out`.
 * Returns the exit status chef-server-ctl reports (0 or 1).
 */
export async function reconfigure(
  p: NodePaths,
  out: (line: string) => void,
  cwd: string = process.cwd(),
): Promise<number> {
  const started = Date.now();
  const f = new Formatter(out);
  out('Starting Chef Client, version 11.12.2 (chef-ha sandbox stand-in)');
  out('Compiling Cookbooks...');
  out('Converging resources');
  try {
    f.recipe('chef-server::default');
    const etcExisted = existsSync(p.etcDir);
    await mkdir(p.etcDir, { recursive: true });
    await chown(p.etcDir, 0, 0);
    await chmod(p.etcDir, 0o775);
    if (etcExisted) {
      f.upToDate(`directory[${p.etcDir}]`, 'create');
    } else {
      f.changed(`directory[${p.etcDir}]`, 'create', `create new directory ${p.etcDir}`);
    }
    const secrets = await readOrGenerateSecrets(p);
    const attrs = await readAttributes(p, secrets);
    if (existsSync(p.bootstrappedFile)) {
      (attrs['bootstrap'] ??= {})['enable'] = false;
    }
    const ctx: Ctx = { p, f, attrs, secrets, pgUid: await userIds(EMBEDDED_OS_USER) };
    // compile-time evaluation, as in the 11.1.4+ recipe
    const pgStartState = await pgIsRunning(p);
    f.recipe('chef-server::users');
    await ensureChefServerUser();
    f.upToDate('user[chef_server]', 'create');
    await mkdir(p.dataDir, { recursive: true });
    await mkdir(p.logDir, { recursive: true });

    await placeholder(ctx, 'rabbitmq');
    let writable = false;
    if (!existsSync(p.recipeFile)) {
      throw new ResourceFailure(
        'include_recipe[chef-server::postgresql]',
        'include',
        'Chef::Exceptions::RecipeNotFound',
        `could not find recipe postgresql for cookbook chef-server (${p.recipeFile})`,
      );
    }
    if (!bool(attrs, 'postgresql', 'enable')) {
      f.recipe('chef-server::postgresql_disable');
      if (await disableService(p, 'postgresql')) {
        f.changed(
          'runit_service[postgresql]',
          'disable',
          `delete symlink ${join(p.serviceDir, 'postgresql')}`,
        );
      } else {
        f.upToDate('runit_service[postgresql]', 'disable');
      }
      writable = await probeWritable(ctx);
    } else if (await recipeIsOverride(p)) {
      writable = (await overridePostgresql(ctx)).writable;
    } else {
      await originalPostgresql(ctx, pgStartState, bool(attrs, 'bootstrap', 'enable'), cwd);
      writable = await probeWritable(ctx);
    }
    for (const svc of ['chef-solr', 'chef-expander', 'bookshelf']) {
      await placeholder(ctx, svc);
    }
    await erchef(ctx);
    if (bool(attrs, 'bootstrap', 'enable') || !existsSync(p.bootstrappedFile)) {
      await bootstrap(ctx, writable);
    }
    for (const svc of ['chef-server-webui', 'nginx']) {
      await placeholder(ctx, svc);
    }
    f.recipe('chef-server::default');
    const running = JSON.stringify({ chef_server: attrs, run_list: ['recipe[chef-server]'] }, null, 2) + '\n';
    if (await writeIfChanged(p.runningJson, running, 0o600)) {
      f.changed(`file[${p.runningJson}]`, 'create', `update content in file ${p.runningJson}`);
    } else {
      f.upToDate(`file[${p.runningJson}]`, 'create');
    }
    const owner = await userIds('chef_server').catch(() => ({ uid: 0, gid: 0 }));
    await chown(p.runningJson, owner.uid, 0);
    out(
      `Chef Client finished, ${f.updated} resources updated in ${((Date.now() - started) / 1000).toFixed(1)} seconds`,
    );
    out('chef-server Reconfigured!');
    return 0;
  } catch (error) {
    const e =
      error instanceof ResourceFailure
        ? error
        : new ResourceFailure(
            'ruby_block[chef-server stand-in]',
            'run',
            'RuntimeError',
            error instanceof Error ? error.message : String(error),
          );
    out('');
    out('================================================================================');
    out(`Error executing action \`${e.action}\` on resource '${e.resource}'`);
    out('================================================================================');
    out('');
    out(e.exception);
    out('-'.repeat(e.exception.length));
    out(e.message);
    out('');
    out(
      `Chef Client failed. ${f.updated} resources updated in ${((Date.now() - started) / 1000).toFixed(1)} seconds`,
    );
    out(
      `[${new Date().toISOString()}] FATAL: Stacktrace dumped to ${join(p.cookbooksDir, 'cache', 'chef-stacktrace.out')}`,
    );
    out(
      `[${new Date().toISOString()}] FATAL: ${e.exception}: ${e.resource} had an error: ${e.message.split('\n')[0] ?? ''}`,
    );
    return 1;
  }
}

/** Whether erchef's database (vip/port as sql_user) accepts writes. */
async function probeWritable(ctx: Ctx): Promise<boolean> {
  const client = new pg.Client({
    host: str(ctx.attrs, 'postgresql', 'vip'),
    port: int(ctx.attrs, 'postgresql', 'port'),
    user: str(ctx.attrs, 'postgresql', 'sql_user'),
    password: str(ctx.attrs, 'postgresql', 'sql_password'),
    database: 'opscode_chef',
    connectionTimeoutMillis: 3000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query<{ ro: string; rec: boolean }>(
      "select current_setting('transaction_read_only') as ro, pg_is_in_recovery() as rec",
    );
    return r.rows[0]?.ro === 'off' && !r.rows[0].rec;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** show-config: the generated attributes as JSON (secrets included, as the real command prints them). */
export async function showConfig(p: NodePaths): Promise<string> {
  let secrets: Secrets;
  try {
    secrets = JSON.parse(await readFile(p.secretsFile, 'utf8')) as Secrets;
  } catch {
    secrets = {
      rabbitmq: { password: '' },
      chef_server_webui: { cookie_secret: '' },
      postgresql: { sql_password: '', sql_ro_password: '' },
      bookshelf: { access_key_id: '', secret_access_key: '' },
    };
  }
  const attrs = await readAttributes(p, secrets);
  return JSON.stringify({ chef_server: attrs }, null, 2);
}

export { embeddedPostmaster };
