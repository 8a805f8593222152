/**
 * STAND-IN of `chef-server-ctl reconfigure`, i.e. of chef-solo running the chef-server cookbook's run list
 * (shared/reference/chef-server-11.md sections 0, 1, 4). The steps of recipes/default.rb are played here,
 * in their order: /etc/chef-server, the secrets file, the chef_server account, the placeholder services,
 * erchef's database settings, the bootstrap rows and the `bootstrapped` marker, and
 * chef-server-running.json. The postgresql step is NOT played here: the INSTALLED `recipes/postgresql.rb`
 * (or `postgresql_disable.rb` when postgresql['enable'] is false) is executed as Ruby by the chef-solo
 * stand-in (./chef-solo/chef-solo.rb), which also computes the node attributes this module then uses.
 * Output imitates chef-solo's resource lines.
 *
 * Known differences from the real thing (also in docs/sandbox.md): the postgresql step's delayed
 * notifications run at the end of that step, not at the end of the whole run; calls the Ruby run makes to
 * chef-server-ctl (status/start/stop postgresql) are not written to ctl-calls.log.
 */
import { createHash, createPublicKey, generateKeyPair, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import pg from 'pg';
import { STANDINS_DIR, type NodePaths } from '../paths.js';
import { run, userIds } from '../proc.js';
import { bool, int, readOrGenerateSecrets, str, type Attributes } from './attributes.js';
import { defineService, serviceStatus, svStart, svStop } from './runit.js';

/** The chef-solo stand-in (Ruby). */
export const CHEF_SOLO = join(STANDINS_DIR, 'chef-solo', 'chef-solo.rb');
/** Set in the environment of the Ruby run, so that nested chef-server-ctl calls are not logged. */
export const NESTED_ENV = 'CHEF_STANDIN_IN_RECONFIGURE';
/** Sandbox only: file under var/log/chef-server that collects the output of every reconfigure. */
export const RECONFIGURE_LOG = 'reconfigure.log';
/** Sandbox only: the line that starts each run's output in RECONFIGURE_LOG. */
export const RECONFIGURE_HEADER = '==== chef-server-ctl reconfigure';
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

interface Ctx {
  readonly p: NodePaths;
  readonly f: Formatter;
  readonly attrs: Attributes;
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
  const shown = unroot(p, p.erchefConfig);
  if (changed) {
    f.changed(`template[${shown}]`, 'create', `update content in file ${shown}`);
  } else {
    f.upToDate(`template[${shown}]`, 'create');
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

async function placeholder(ctx: Pick<Ctx, 'p' | 'f'>, svc: string): Promise<void> {
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
    f.upToDate(`file[${unroot(p, p.bootstrappedFile)}]`, 'create');
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
    `file[${unroot(p, webui)}]`,
    'create',
    `change mode from '' to '0640'`,
    `change group from '' to 'chef_server'`,
  );
  await writeFile(p.bootstrappedFile, BOOTSTRAPPED_CONTENT, { mode: 0o600 });
  await chmod(p.bootstrappedFile, 0o600);
  f.changed(
    `file[${unroot(p, p.bootstrappedFile)}]`,
    'create',
    `create new file ${unroot(p, p.bootstrappedFile)}`,
  );
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

interface SoloResult {
  readonly updated: number;
  readonly failed: {
    resource: string | null;
    action: string | null;
    exception: string;
    message: string;
  } | null;
  readonly chef_server: Attributes | null;
}

/** Runs the chef-solo stand-in (Ruby) with `args`; its stdout lines go to `out`. */
function runRuby(
  p: NodePaths,
  args: readonly string[],
  out: (line: string) => void,
  cwd: string,
): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const sandbox = process.env['CHEF_STANDIN_SANDBOX'];
    const child = spawn(
      'ruby',
      [CHEF_SOLO, '--root', p.root, ...(sandbox ? ['--sandbox', sandbox] : []), ...args],
      { cwd, env: { ...process.env, [NESTED_ENV]: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let buffer = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffer += d;
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        out(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf('\n');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (buffer !== '') {
        out(buffer);
      }
      resolvePromise(code ?? 1);
    });
  });
}

/** The postgresql step of default.rb, executed by the chef-solo stand-in. */
async function chefSoloPostgresql(
  p: NodePaths,
  out: (line: string) => void,
  cwd: string,
): Promise<{ code: number; result: SoloResult }> {
  const dir = await mkdtemp(join(tmpdir(), 'chef-solo-standin-'));
  const file = join(dir, 'result.json');
  try {
    const code = await runRuby(p, ['--result', file], out, cwd);
    let result: SoloResult;
    try {
      result = JSON.parse(await readFile(file, 'utf8')) as SoloResult;
    } catch {
      result = {
        updated: 0,
        chef_server: null,
        failed: {
          resource: null,
          action: null,
          exception: 'RuntimeError',
          message: `chef-solo stand-in exited ${code} without a result`,
        },
      };
    }
    return { code: result.failed === null && code === 0 ? 0 : 1, result };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
  const seconds = (): string => ((Date.now() - started) / 1000).toFixed(1);
  out('Starting Chef Client, version 11.12.2 (chef-ha sandbox stand-in)');
  out('Compiling Cookbooks...');
  out('Converging resources');
  let soloUpdated = 0;
  try {
    f.recipe('chef-server::default');
    const etcExisted = existsSync(p.etcDir);
    await mkdir(p.etcDir, { recursive: true });
    await chown(p.etcDir, 0, 0);
    await chmod(p.etcDir, 0o775);
    if (etcExisted) {
      f.upToDate(`directory[${unroot(p, p.etcDir)}]`, 'create');
    } else {
      f.changed(`directory[${unroot(p, p.etcDir)}]`, 'create', `create new directory ${unroot(p, p.etcDir)}`);
    }
    await readOrGenerateSecrets(p);
    f.recipe('chef-server::users');
    await ensureChefServerUser();
    f.upToDate('user[chef_server]', 'create');
    await mkdir(p.dataDir, { recursive: true });
    await mkdir(p.logDir, { recursive: true });
    await placeholder({ p, f }, 'rabbitmq');

    const solo = await chefSoloPostgresql(p, out, cwd);
    soloUpdated = solo.result.updated;
    if (solo.code !== 0 || solo.result.chef_server === null) {
      const e = solo.result.failed ?? {
        resource: null,
        action: null,
        exception: 'RuntimeError',
        message: 'chef-solo stand-in failed',
      };
      out(`Chef Client failed. ${f.updated + soloUpdated} resources updated in ${seconds()} seconds`);
      out(
        `[${new Date().toISOString()}] FATAL: Stacktrace dumped to ${join(p.cookbooksDir, 'cache', 'chef-stacktrace.out')}`,
      );
      const first = e.message.split('\n')[0] ?? '';
      out(
        `[${new Date().toISOString()}] FATAL: ${e.exception}: ${e.resource === null ? first : `${e.resource} had an error: ${first}`}`,
      );
      return 1;
    }
    const attrs = solo.result.chef_server;
    const ctx: Ctx = { p, f, attrs };
    const writable = await probeWritable(ctx);
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
    const runningShown = unroot(p, p.runningJson);
    if (await writeIfChanged(p.runningJson, running, 0o600)) {
      f.changed(`file[${runningShown}]`, 'create', `update content in file ${runningShown}`);
    } else {
      f.upToDate(`file[${runningShown}]`, 'create');
    }
    const owner = await userIds('chef_server').catch(() => ({ uid: 0, gid: 0 }));
    await chown(p.runningJson, owner.uid, 0);
    out(`Chef Client finished, ${f.updated + soloUpdated} resources updated in ${seconds()} seconds`);
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
    out(`Chef Client failed. ${f.updated + soloUpdated} resources updated in ${seconds()} seconds`);
    out(
      `[${new Date().toISOString()}] FATAL: Stacktrace dumped to ${join(p.cookbooksDir, 'cache', 'chef-stacktrace.out')}`,
    );
    out(
      `[${new Date().toISOString()}] FATAL: ${e.exception}: ${e.resource} had an error: ${e.message.split('\n')[0] ?? ''}`,
    );
    return 1;
  }
}

/** A path under the node root as the recipes name it (the node root stands for "/"). */
function unroot(p: NodePaths, path: string): string {
  return path.startsWith(`${p.root}/`) ? path.slice(p.root.length) : path;
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

/** show-config: ChefServer.generate_config as JSON, printed by the chef-solo stand-in (secrets included). */
export async function showConfig(p: NodePaths, out: (line: string) => void): Promise<number> {
  return runRuby(p, ['--show-config'], out, process.cwd());
}
