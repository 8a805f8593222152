/**
 * Londiste compound steps, reached only through executePlan (action "londiste", args.op).
 */
import * as path from 'node:path';
import type { CommandContext } from '../core/context.js';
import { londistePaths } from './names.js';
import { readLocalNodeState } from './facts.js';
import { ensureSupervisor, stopSupervisor } from './daemons.js';
import { saveLostRows } from './lost-rows.js';
import { quoteLiteral } from '../pg/conninfo.js';

type Args = Readonly<Record<string, unknown>>;

/** Creates londiste.dir: etc/ owned by root, log/ and pid/ owned by the PostgreSQL OS user. */
async function prepareDirs(ctx: CommandContext): Promise<string> {
  const { files } = ctx.ports;
  const p = londistePaths(ctx.config);
  const owner = ctx.ports.proc.isRoot ? await files.lookupUser(ctx.config.postgres.osUser) : undefined;
  await files.mkdirp(p.dir, 0o755);
  await files.mkdirp(p.etc, 0o755);
  for (const d of [p.log, p.pid]) {
    await files.mkdirp(d, 0o755, owner);
    if (owner) {
      await files.chown(d, owner.uid, owner.gid);
    }
  }
  return `${p.dir} (logs in ${p.log})`;
}

/**
 * pg_dump of the replicated tables (data and definitions) into the backup folder before they are
 * emptied; the file is written by root, mode 0600.
 */
export async function dumpTables(ctx: CommandContext, args: Args): Promise<string> {
  const file = String(args['file']);
  const tables = (args['tables'] as readonly string[] | undefined) ?? ctx.config.chefServer.tables;
  const c = ctx.config;
  const argv: [string, ...string[]] = [
    `${c.postgres.bindir}/pg_dump`,
    '-h',
    c.postgres.socketDir,
    '-p',
    String(c.postgres.port),
    '-U',
    c.postgres.superuser,
    '-Fc',
    ...tables.flatMap((t) => ['-t', `public.${t}`]),
    c.chefServer.database,
  ];
  const r = await ctx.ports.shell.run(argv, { user: c.postgres.osUser, timeoutMs: 3_600_000, binary: true });
  if (r.exitCode !== 0 || !r.stdoutBytes) {
    throw new Error(`pg_dump exited ${r.exitCode}: ${r.stderr.trim()}`);
  }
  await ctx.ports.files.mkdirp(path.dirname(file), 0o700);
  await ctx.ports.files.writeAtomic(file, r.stdoutBytes, 0o600);
  return `saved in ${file} (${r.stdoutBytes.length} bytes; restore with pg_restore -d ${c.chefServer.database} --data-only)`;
}

/** Polls the local table states until every replicated table is `ok`, printing progress. */
async function waitSync(ctx: CommandContext): Promise<string> {
  const { clock } = ctx.ports;
  const started = clock.now();
  const deadline = started + ctx.config.londiste.syncTimeoutMs;
  let last = '';
  for (;;) {
    const s = await readLocalNodeState(ctx);
    const want = ctx.config.chefServer.tables.map((t) => `public.${t}`);
    const states = want.map((t) => {
      const row = s.tables.find((x) => x.table === t);
      const rows = s.chefTables.find((x) => `public.${x.name}` === t)?.rows ?? 0;
      return { table: t, state: row ? (row.state ?? 'waiting') : 'not registered', rows };
    });
    const line = states
      .map((x) => `${x.table.replace(/^public\./, '')} ${x.state} (${x.rows} rows)`)
      .join(', ');
    if (line !== last) {
      ctx.reporter.progress(
        `    ${((clock.now() - started) / 1000).toFixed(1)}s  ${line}${s.lastError ? `  worker error: ${s.lastError}` : ''}\n`,
      );
      last = line;
    }
    if (states.every((x) => x.state === 'ok')) {
      return `all ${states.length} tables ok after ${((clock.now() - started) / 1000).toFixed(1)}s`;
    }
    if (clock.now() > deadline) {
      throw new Error(
        `tables not in sync after ${(ctx.config.londiste.syncTimeoutMs / 1000).toFixed(0)}s: ${line}; see ${londistePaths(ctx.config).workerLog}`,
      );
    }
    await clock.sleep(250, ctx.signal);
  }
}

async function peerPassword(ctx: CommandContext): Promise<string> {
  const password = await ctx.secrets.read('replication');
  if (!password) {
    throw new Error('no replication secret in the state directory to reach the peer');
  }
  return password;
}

/** Writes the rows this node has and the peer lacks or holds differently to args.file. */
async function lostRows(ctx: CommandContext, args: Args): Promise<string> {
  const r = await saveLostRows(ctx, String(args['file']), await peerPassword(ctx));
  const per = Object.entries(r.perTable)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
  return `${r.count} rows ${ctx.config.peer.name} lacks or holds differently (${per}) written to ${r.file}`;
}

/**
 * On the peer (the new root): forget a node of the queue (its location, its subscriber registration and
 * the consumer takeover kept for it), so that it can register again as a branch. Only the peer is
 * touched, unlike `londiste drop-node`, which runs on every member it knows.
 */
async function forgetNodeOnPeer(ctx: CommandContext, args: Args): Promise<string> {
  const c = ctx.config;
  const rows = await ctx.ports.pg.queryPeer<{ ret_code: number; ret_note: string }>(
    {
      host: c.peer.address,
      port: c.peer.postgresPort,
      user: c.replication.user,
      password: await peerPassword(ctx),
      database: c.chefServer.database,
      connectTimeoutMs: 5_000,
      statementTimeoutMs: 60_000,
    },
    `SELECT ret_code, ret_note FROM pgq_node.drop_node(${quoteLiteral(c.londiste.queue)}, ${quoteLiteral(String(args['node']))})`,
  );
  const r = rows[0];
  if (!r || r.ret_code >= 400) {
    throw new Error(
      `pgq_node.drop_node on ${c.peer.name}: ${r ? `${r.ret_code} ${r.ret_note}` : 'no answer'}`,
    );
  }
  return r.ret_note;
}

/**
 * Runs one Londiste action.
 * @throws whatever the port calls throw; executePlan wraps it in StepFailedError.
 */
export async function runLondisteAction(ctx: CommandContext, args: Args): Promise<string | undefined> {
  switch (args['op']) {
    case 'prepare-dirs':
      return prepareDirs(ctx);
    case 'daemons-start':
      return ensureSupervisor(ctx, ctx.options.configPath);
    case 'daemons-stop':
      return stopSupervisor(ctx);
    case 'dump-tables':
      return dumpTables(ctx, args);
    case 'wait-sync':
      return waitSync(ctx);
    case 'lost-rows':
      return lostRows(ctx, args);
    case 'forget-node-on-peer':
      return forgetNodeOnPeer(ctx, args);
    default:
      throw new Error(`internal: unknown londiste action ${String(args['op'])}`);
  }
}
