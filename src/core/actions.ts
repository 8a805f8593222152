/**
 * Compound steps: effects that need more than one port call. Each is idempotent or guarded, and each is
 * reached only through executePlan (so dry-run never gets here).
 */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { CommandContext } from './context.js';
import { embeddedTarget, localTarget, peerTarget, statePaths } from './context.js';
import type { ActionName } from './plan.js';
import { CommandError, type LocalPgTarget, urlHost } from '../ports/index.js';
import {
  featuresFor,
  majorFromVersionNum,
  renderFenceFile,
  renderReplicationGrants,
  renderReplicationRoleSql,
} from '../pg/version.js';
import { md5Verifier, scramSha256Verifier } from '../pg/scram.js';
import { quoteIdent, quoteLiteral } from '../pg/conninfo.js';
import type { BundleEtcEntry, BundleManifest } from '../chef/bundle.js';
import { BUNDLE_FORMAT, renderSums } from '../chef/bundle.js';
import { renderSshArgv } from '../chef/ssh.js';
import { VERSION } from './version.js';
import { dumpTables, runLondisteAction } from '../londiste/actions.js';
import { runRejoinAction } from './rejoin-actions.js';

type Args = Readonly<Record<string, unknown>>;

function str(args: Args, key: string): string {
  const v = args[key];
  if (typeof v !== 'string') {
    throw new Error(`internal: action argument ${key} missing`);
  }
  return v;
}

/** Name ↔ id maps of /etc/passwd or /etc/group (name:x:id:…), so that owners travel by name. */
async function readIdTable(
  ctx: CommandContext,
  file: '/etc/passwd' | '/etc/group',
): Promise<{ byId: Map<number, string>; byName: Map<string, number> }> {
  const byId = new Map<number, string>();
  const byName = new Map<string, number>();
  for (const line of ((await ctx.ports.files.readTextIfExists(file)) ?? '').split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id && /^\d+$/.test(id)) {
      byId.set(Number(id), name);
      byName.set(name, Number(id));
    }
  }
  return { byId, byName };
}

async function nameOf(ctx: CommandContext, file: '/etc/passwd' | '/etc/group', id: number): Promise<string> {
  return (await readIdTable(ctx, file)).byId.get(id) ?? String(id);
}

async function idOf(
  ctx: CommandContext,
  file: '/etc/passwd' | '/etc/group',
  name: string,
): Promise<number | undefined> {
  return /^\d+$/.test(name) ? Number(name) : (await readIdTable(ctx, file)).byName.get(name);
}

async function replicationRole(ctx: CommandContext, args: Args): Promise<string> {
  const password = await ctx.secrets.read('replication');
  if (!password) {
    throw new Error('the replication secret is missing from the state directory');
  }
  const version = ctx.config.postgres.version;
  const role = ctx.config.replication.user;
  const verifier =
    featuresFor(version).passwordEncryption === 'scram-sha-256'
      ? scramSha256Verifier(password, randomBytes(16))
      : md5Verifier(password, role);
  const sql = [
    renderReplicationRoleSql(role, verifier, args['exists'] === true),
    ...renderReplicationGrants(version, role),
  ]
    .map((s) => `${s};`)
    .join('\n');
  await ctx.ports.pg.execLocal(localTarget(ctx.config), 'postgres', sql);
  return `role ${role} with replication, monitoring and fencing rights`;
}

async function writeBundle(ctx: CommandContext, args: Args): Promise<string> {
  const { files, archive } = ctx.ports;
  const config = ctx.config;
  const output = str(args, 'output');
  const password = await ctx.secrets.read('replication');
  if (!password) {
    throw new Error('the replication secret is missing from the state directory');
  }
  const rows = await ctx.ports.pg.queryLocal<{ v: number; sysid: string }>(
    localTarget(config),
    'postgres',
    "SELECT current_setting('server_version_num')::int AS v, (SELECT system_identifier::text FROM pg_control_system()) AS sysid",
  );
  const server = rows[0];
  if (!server) {
    throw new Error('the local PostgreSQL returned no version');
  }
  const work = path.join(config.stateDir, `.bundle-${randomBytes(4).toString('hex')}`);
  await files.mkdirp(work, 0o700);
  try {
    const payload = new Map<string, Buffer>();
    const etcEntries: BundleEtcEntry[] = [];
    await files.mkdirp(path.join(work, 'etc-chef-server'), 0o700);
    for (const entry of await files.walk(config.chefServer.etcDir)) {
      if (entry.info.isSymlink) {
        continue;
      }
      const rel = `etc-chef-server/${entry.path}`;
      etcEntries.push({
        path: entry.path,
        type: entry.info.isDirectory ? 'dir' : 'file',
        mode: entry.info.mode,
        user: await nameOf(ctx, '/etc/passwd', entry.info.uid),
        group: await nameOf(ctx, '/etc/group', entry.info.gid),
      });
      if (entry.info.isDirectory) {
        await files.mkdirp(path.join(work, rel), 0o700);
      } else {
        const data = await files.readBytes(path.join(config.chefServer.etcDir, entry.path));
        await files.writeAtomic(path.join(work, rel), data, 0o600);
        payload.set(rel, data);
      }
    }
    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT,
      createdAt: new Date(ctx.ports.clock.now()).toISOString(),
      chefHaVersion: VERSION,
      master: { name: config.node.name, address: config.node.address, port: config.postgres.port },
      slave: { name: config.peer.name },
      postgres: {
        major: majorFromVersionNum(server.v),
        versionNum: server.v,
        systemIdentifier: server.sysid,
      },
      replication: {
        mode: config.replication.mode,
        synchronous: config.replication.synchronous,
        user: config.replication.user,
        slotName: str(args, 'slotName'),
      },
      etc: etcEntries,
    };
    const manifestData = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    payload.set('manifest.json', manifestData);
    await files.writeAtomic(path.join(work, 'manifest.json'), manifestData, 0o600);
    const secretData = Buffer.from(`${password}\n`);
    payload.set('secret/replication.password', secretData);
    await files.mkdirp(path.join(work, 'secret'), 0o700);
    await files.writeAtomic(path.join(work, 'secret', 'replication.password'), secretData, 0o600);
    await files.writeAtomic(path.join(work, 'SHA256SUMS'), renderSums(payload), 0o600);
    await files.mkdirp(path.dirname(output), 0o700);
    const tmpOut = `${output}.tmp-${randomBytes(4).toString('hex')}`;
    await archive.create(tmpOut, work, ['manifest.json', 'SHA256SUMS', 'secret', 'etc-chef-server'], 0o600);
    await files.rename(tmpOut, output);
    return `${output} (${etcEntries.length} entries of ${config.chefServer.etcDir})`;
  } finally {
    await files.removeTree(work);
  }
}

async function installEtc(ctx: CommandContext, args: Args): Promise<string> {
  const { files } = ctx.ports;
  const from = str(args, 'from');
  const entries = args['entries'] as readonly BundleEtcEntry[];
  const etc = ctx.config.chefServer.etcDir;
  await files.mkdirp(etc, 0o775);
  await files.emptyDir(etc);
  // Directories first (walk order is parent before child), then files, modes and owners as on the master.
  for (const e of entries) {
    const dest = path.join(etc, e.path);
    const uid = (await idOf(ctx, '/etc/passwd', e.user)) ?? 0;
    const gid = (await idOf(ctx, '/etc/group', e.group)) ?? 0;
    const owner = ctx.ports.proc.isRoot ? { uid, gid } : undefined;
    if (e.type === 'dir') {
      await files.mkdirp(dest, e.mode, owner);
    } else {
      await files.writeAtomic(
        dest,
        await files.readBytes(path.join(from, 'etc-chef-server', e.path)),
        e.mode,
        owner,
      );
    }
  }
  return `${entries.length} entries`;
}

/** pg_dump -Fc of a database to chef-ha's stdout (so that root keeps the file: the state dir is 0700). */
async function dumpDatabase(
  ctx: CommandContext,
  from: LocalPgTarget,
  db: string,
  what: string,
): Promise<Buffer> {
  const dump = await ctx.ports.shell.run(
    [
      `${from.bindir}/pg_dump`,
      '-h',
      from.socketDir,
      '-p',
      String(from.port),
      '-U',
      from.superuser,
      '-Fc',
      db,
    ],
    { user: from.osUser, timeoutMs: 3_600_000, binary: true },
  );
  if (dump.exitCode !== 0 || !dump.stdoutBytes) {
    throw new CommandError(
      `pg_dump ${db} from ${what}`,
      dump.exitCode,
      dump.stderr,
      `exited ${dump.exitCode}`,
    );
  }
  return dump.stdoutBytes;
}

/**
 * Copies the Chef database from one cluster to the other: the source's dump is kept in the backup
 * folder; with `replace`, the destination's own copy is dumped there too, then dropped.
 */
async function copyDatabase(ctx: CommandContext, args: Args): Promise<string> {
  const { shell, pg, files } = ctx.ports;
  const config = ctx.config;
  const toEmbedded = args['direction'] === 'distribution-to-embedded';
  const source = toEmbedded ? localTarget(config) : embeddedTarget(config);
  const dest = toEmbedded ? embeddedTarget(config) : localTarget(config);
  const names = toEmbedded
    ? ['the distribution PostgreSQL', 'the embedded PostgreSQL']
    : ['the embedded PostgreSQL', 'the distribution PostgreSQL'];
  const db = config.chefServer.database;
  const dumpFile = str(args, 'dumpFile');
  const data = await dumpDatabase(ctx, source, db, names[0] ?? '');
  await files.mkdirp(path.dirname(dumpFile), 0o700);
  await files.writeAtomic(dumpFile, data, 0o600);
  if (args['replace'] === true) {
    const exists = await pg.queryLocal<{ datname: string }>(
      dest,
      'postgres',
      `SELECT datname FROM pg_database WHERE datname = ${quoteLiteral(db)}`,
    );
    if (exists.length > 0) {
      const old = await dumpDatabase(ctx, dest, db, names[1] ?? '');
      await files.writeAtomic(str(args, 'replacedDumpFile'), old, 0o600);
      await pg.execLocal(dest, 'postgres', `DROP DATABASE ${quoteIdent(db)};`);
    }
  }
  await pg.execLocal(
    dest,
    'postgres',
    `CREATE DATABASE ${quoteIdent(db)} TEMPLATE template0 ENCODING 'UTF8';`,
  );
  const restore = await shell.run(
    [
      `${dest.bindir}/pg_restore`,
      '-h',
      dest.socketDir,
      '-p',
      String(dest.port),
      '-U',
      dest.superuser,
      '--no-owner',
      '--no-privileges',
      '--exit-on-error',
      '-d',
      db,
    ],
    { user: dest.osUser, timeoutMs: 3_600_000, input: data },
  );
  if (restore.exitCode !== 0) {
    throw new CommandError(
      `pg_restore into ${db} on ${names[1] ?? ''}`,
      restore.exitCode,
      restore.stderr,
      `exited ${restore.exitCode}`,
    );
  }
  return `dump kept in ${dumpFile}`;
}

async function stripAutoConf(ctx: CommandContext, args: Args): Promise<string> {
  const dataDir = typeof args['dataDir'] === 'string' ? args['dataDir'] : ctx.config.postgres.dataDir;
  const file = path.join(dataDir, 'postgresql.auto.conf');
  const keys = args['keys'] as readonly string[];
  const text = await ctx.ports.files.readTextIfExists(file);
  if (text === undefined) {
    return 'no postgresql.auto.conf';
  }
  const kept = text.split('\n').filter((line) => !keys.some((k) => new RegExp(`^\\s*${k}\\s*=`).test(line)));
  const next = kept.join('\n');
  if (next === text) {
    return 'nothing to remove';
  }
  const st = await ctx.ports.files.stat(file);
  await ctx.ports.files.writeAtomic(
    file,
    next,
    st?.mode ?? 0o600,
    st && ctx.ports.proc.isRoot ? { uid: st.uid, gid: st.gid } : undefined,
  );
  return `removed ${keys.join(', ')}`;
}

async function recordState(ctx: CommandContext, args: Args): Promise<string> {
  const file = str(args, 'path');
  await ctx.ports.files.mkdirp(path.dirname(file), 0o700);
  if (args['append'] === true) {
    const old = (await ctx.ports.files.readTextIfExists(file)) ?? '';
    await ctx.ports.files.writeAtomic(
      file,
      `${old}${JSON.stringify({ ...(args['data'] as object), at: new Date(ctx.ports.clock.now()).toISOString() })}\n`,
      0o600,
    );
  } else {
    await ctx.ports.files.writeAtomic(file, `${JSON.stringify(args['data'], null, 2)}\n`, 0o600);
  }
  return file;
}

/** Fences a running old primary over SQL: read-only by default, clients cut, starts as a standby next time. */
async function fencePeerSql(ctx: CommandContext, args: Args): Promise<string> {
  const password = await ctx.secrets.read('replication');
  if (!password) {
    throw new Error('no replication secret to reach the peer');
  }
  const target = peerTarget(ctx.config, password);
  const q = (sql: string): Promise<unknown[]> => ctx.ports.pg.queryPeer(target, sql);
  const dataDir = str(args, 'peerDataDir');
  const version = str(args, 'peerMajor');
  const fence = renderFenceFile(version);
  await q('ALTER SYSTEM SET default_transaction_read_only = on');
  await q('SELECT pg_reload_conf()');
  // COPY TO writes as the server's OS user: the signal file makes the next start a read-only standby.
  await q(
    `COPY (SELECT ${quoteLiteral(fence.content.trimEnd())}) TO ${quoteLiteral(path.join(dataDir, fence.name))}`,
  );
  // Client sessions end; superusers' are left (the replication role may not end them, and one such
  // session makes the whole statement fail): they are the node's own tools (its monitor and health-server
  // query as postgres), not Chef's, and the read-only default applies to their next transaction.
  await q(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename <> current_user AND usesysid NOT IN (SELECT oid FROM pg_roles WHERE rolsuper)",
  );
  return 'old primary is read-only, its client sessions were ended, and it will start as a standby';
}

async function fencePeerSsh(ctx: CommandContext, args: Args): Promise<string> {
  const argv = renderSshArgv(ctx.config, ['fence', '--yes', '--reason', str(args, 'reason')]);
  if (!argv) {
    throw new Error('peer.ssh is not configured');
  }
  const result = await ctx.ports.shell.run(argv, { timeoutMs: 120_000 });
  if (result.exitCode === 255) {
    // ssh itself failed: the host is down or cut off. Nothing can reach it, and it cannot take writes
    // while it stays down; the operator is told it must not be started before rejoin.
    ctx.reporter.warn(
      `the old master's host does not answer over ssh (${result.stderr.trim().split('\n').pop() ?? ''}): it is NOT fenced; do not start it before \`chef-ha-ctl rejoin\``,
    );
    return 'host unreachable over ssh: not fenced';
  }
  if (result.exitCode !== 0) {
    throw new CommandError(argv.join(' '), result.exitCode, result.stderr, `exited ${result.exitCode}`);
  }
  return 'fenced over ssh';
}

/** Renames a finished copy (a base backup made beside the data directory) to where it belongs. */
async function moveIntoPlace(ctx: CommandContext, args: Args): Promise<string> {
  const from = str(args, 'from');
  const to = str(args, 'to');
  const { files } = ctx.ports;
  if (await files.exists(to)) {
    throw new Error(`${to} exists: move it away first (the previous step backs it up)`);
  }
  await files.rename(from, to);
  return `${from} is now ${to}`;
}

/**
 * Puts servers in maint through HAProxy's runtime API, so that the proxy sends no new connection to them
 * and ends the ones it holds; in the same line, sets `ready` servers (this node's) back from maint. When `required` is false a proxy that cannot be reached is a warning: the old
 * master was fenced another way before the promotion.
 */
async function fenceProxy(ctx: CommandContext, args: Args): Promise<string> {
  const address = str(args, 'address');
  const servers = args['servers'] as string[];
  // this node's own servers: an earlier failover to the peer left them in maint, and nothing else lifts it
  const ready = (args['ready'] as string[] | undefined) ?? [];
  const timeoutMs = Number(args['timeoutMs']);
  // maint stops new connections only: the sessions already open to the old master (a client in the middle
  // of a statement) are ended too, so that none of them can wait on, or write to, a fenced server.
  const line = [
    ...servers.map((s) => `set server ${s} state maint`),
    ...servers.map((s) => `shutdown sessions server ${s}`),
    ...ready.map((s) => `set server ${s} state ready`),
  ].join('; ');
  let out: string;
  try {
    out = await ctx.ports.haproxy.command(address, line, timeoutMs);
  } catch (error) {
    if (args['required'] === true) {
      throw error;
    }
    const why = error instanceof Error ? error.message : String(error);
    ctx.reporter.warn(
      `could not fence ${servers.join(', ')} in HAProxy (${why}); the old master was fenced another way, but put it in maint by hand once the proxy answers`,
    );
    return 'HAProxy not reached: not fenced there';
  }
  const problems = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (problems.length > 0) {
    const why = `HAProxy at ${address} answered: ${problems.join(' | ')}`;
    if (args['required'] === true) {
      throw new Error(why);
    }
    ctx.reporter.warn(`${why}; check that the proxy runs the config of \`chef-ha-ctl haproxy-config\``);
    return 'HAProxy answered with errors';
  }
  return `${servers.join(', ')} in maint, their sessions ended${ready.length > 0 ? `, ${ready.join(', ')} ready` : ''} at ${address}`;
}

async function writeLocalFenceFile(ctx: CommandContext): Promise<string> {
  const fence = renderFenceFile(ctx.config.postgres.version);
  const owner = ctx.ports.proc.isRoot
    ? await ctx.ports.files.lookupUser(ctx.config.postgres.osUser)
    : undefined;
  await ctx.ports.files.writeAtomic(
    path.join(ctx.config.postgres.dataDir, fence.name),
    fence.content,
    0o600,
    owner,
  );
  return fence.name;
}

/**
 * Runs one action.
 * @throws whatever the action's port calls throw; executePlan wraps it in StepFailedError.
 */
export async function runAction(
  ctx: CommandContext,
  action: ActionName,
  args: Args,
): Promise<string | undefined> {
  switch (action) {
    case 'ensure-secret':
      await ctx.secrets.ensure('replication');
      return `kept in ${statePaths(ctx.config).secrets} (mode 0600)`;
    case 'import-secret': {
      const value = (await ctx.ports.files.readText(str(args, 'from'))).trim();
      await ctx.secrets.write('replication', value);
      return `kept in ${statePaths(ctx.config).secrets} (mode 0600)`;
    }
    case 'replication-role':
      return replicationRole(ctx, args);
    case 'write-bundle':
      return writeBundle(ctx, args);
    case 'install-etc-chef-server':
      return installEtc(ctx, args);
    case 'copy-database':
      return copyDatabase(ctx, args);
    case 'dump-tables':
      return dumpTables(ctx, args);
    case 'londiste':
      return runLondisteAction(ctx, args);
    case 'strip-auto-conf':
      return stripAutoConf(ctx, args);
    case 'move-into-place':
      return moveIntoPlace(ctx, args);
    case 'record-state':
      return recordState(ctx, args);
    case 'fence-peer-sql':
      return fencePeerSql(ctx, args);
    case 'fence-peer-ssh':
      return fencePeerSsh(ctx, args);
    case 'fence-proxy':
      return fenceProxy(ctx, args);
    case 'write-fence-file':
      return writeLocalFenceFile(ctx);
    case 'save-diverged-wal':
    case 'rewind':
      return runRejoinAction(ctx, action, args);
    case 'refresh-health':
      return refreshHealth(ctx, args);
  }
}

/**
 * Asks a node's health endpoint for a new snapshot now (GET /refresh), so that HAProxy's next check sees
 * a change this command just made, instead of up to health.refreshMs later. Never fails: without an
 * endpoint the next refresh comes anyway.
 */
async function refreshHealth(ctx: CommandContext, args: Args): Promise<string> {
  const { node, peer, health } = ctx.config;
  const onPeer = str(args, 'on') === 'peer';
  const [name, address, port] = onPeer
    ? [peer.name, peer.address, peer.healthPort]
    : [node.name, node.address, health.port];
  const status = await ctx.ports.http.statusOrRefused(`http://${urlHost(address)}:${port}/refresh`, 500);
  return status === 204
    ? `${name}'s health endpoint took a new snapshot`
    : `${name}'s health endpoint did not answer (${status === 'refused' ? 'not running' : status === 0 ? 'no answer' : `HTTP ${status}`}): it refreshes by itself within health.refreshMs`;
}
