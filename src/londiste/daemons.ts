/**
 * Supervision of the Londiste daemons of one node: pgqd (one per cluster) and the worker. A small
 * supervisor (`chef-ha-ctl londiste-daemons run`) keeps both running from their pid files, restarts the
 * one that died, and stops both (by pid, SIGINT as `pgqd -s` / `londiste -s` do) when it is stopped.
 * On a real host systemd or runit runs the supervisor; in the sandbox `londiste-daemons start` detaches it.
 */
import type { CommandContext } from '../core/context.js';
import { localTarget } from '../core/context.js';
import { RefusedError } from '../core/errors.js';
import { quoteLiteral } from '../pg/conninfo.js';
import { londisteEnv, londistePaths } from './names.js';
import { readDaemons } from './facts.js';

async function isMember(ctx: CommandContext): Promise<boolean> {
  try {
    const rows = await ctx.ports.pg.queryLocal<{ n: number | string }>(
      localTarget(ctx.config),
      ctx.config.chefServer.database,
      `SELECT CASE WHEN to_regclass('pgq_node.node_info') IS NULL THEN 0 ELSE
         (SELECT count(*) FROM pgq_node.node_info WHERE queue_name = ${quoteLiteral(ctx.config.londiste.queue)}) END AS n`,
      5_000,
    );
    return Number(rows[0]?.n ?? 0) > 0;
  } catch {
    return false;
  }
}

/** Starts pgqd (daemonized, writes its pid file). */
async function startPgqd(ctx: CommandContext): Promise<string | undefined> {
  const p = londistePaths(ctx.config);
  const r = await ctx.ports.shell.run(['pgqd', '-d', '-q', p.pgqdIni], {
    user: ctx.config.postgres.osUser,
    env: londisteEnv(ctx.config),
    timeoutMs: 30_000,
  });
  return r.exitCode === 0 ? undefined : (r.stderr || r.stdout).trim() || `pgqd exited ${r.exitCode}`;
}

/** Starts the worker (daemonized, writes its pid file). */
async function startWorker(ctx: CommandContext): Promise<string | undefined> {
  const p = londistePaths(ctx.config);
  const r = await ctx.ports.shell.run(['londiste', '-d', p.workerIni, 'worker'], {
    user: ctx.config.postgres.osUser,
    env: londisteEnv(ctx.config),
    timeoutMs: 30_000,
  });
  return r.exitCode === 0 ? undefined : (r.stderr || r.stdout).trim() || `londiste exited ${r.exitCode}`;
}

/** One supervision pass: start what should run and does not. Returns what it did. */
export async function superviseOnce(ctx: CommandContext): Promise<string[]> {
  const p = londistePaths(ctx.config);
  const done: string[] = [];
  const d = await readDaemons(ctx);
  if (d.pgqdPid === undefined && (await ctx.ports.files.exists(p.pgqdIni))) {
    const err = await startPgqd(ctx);
    done.push(err ? `pgqd failed to start: ${err}` : 'started pgqd');
  }
  if (d.workerPid === undefined && (await ctx.ports.files.exists(p.workerIni)) && (await isMember(ctx))) {
    const err = await startWorker(ctx);
    done.push(err ? `worker failed to start: ${err}` : 'started the worker');
  }
  return done;
}

async function stopPid(ctx: CommandContext, pid: number | undefined, timeoutMs: number): Promise<void> {
  if (pid === undefined) {
    return;
  }
  const { proc, clock } = ctx.ports;
  proc.kill(pid, 'SIGINT');
  const deadline = clock.now() + timeoutMs;
  while (proc.isAlive(pid) && clock.now() < deadline) {
    await clock.sleep(100);
  }
  if (proc.isAlive(pid)) {
    proc.kill(pid, 'SIGKILL');
  }
}

/** Stops the worker, then pgqd, by the pids in their pid files. */
export async function stopDaemons(ctx: CommandContext): Promise<void> {
  const d = await readDaemons(ctx);
  await stopPid(ctx, d.workerPid, 10_000);
  await stopPid(ctx, d.pgqdPid, 10_000);
}

/**
 * The supervisor loop (foreground): until the command's signal fires.
 * @throws RefusedError when another supervisor of this node runs.
 */
export async function runSupervisor(ctx: CommandContext): Promise<void> {
  const { files, proc, clock } = ctx.ports;
  const reporter = ctx.reporter;
  const p = londistePaths(ctx.config);
  const existing = (await readDaemons(ctx)).supervisorPid;
  if (existing !== undefined && existing !== proc.pid) {
    throw new RefusedError(
      `the Londiste supervisor already runs (pid ${existing}); nothing was changed`,
      undefined,
      'stop it with `chef-ha-ctl londiste-daemons stop` first',
    );
  }
  await files.mkdirp(ctx.config.stateDir, 0o700);
  await files.writeAtomic(p.supervisorPid, `${proc.pid}\n`, 0o644);
  reporter.info(
    `londiste supervisor ${proc.pid}: watching pgqd and the worker every ${ctx.config.londiste.superviseIntervalMs} ms`,
  );
  try {
    while (!ctx.signal.aborted) {
      for (const line of await superviseOnce(ctx)) {
        reporter.info(`${new Date(clock.now()).toISOString()} ${line}`);
      }
      try {
        await clock.sleep(ctx.config.londiste.superviseIntervalMs, ctx.signal);
      } catch {
        break;
      }
    }
  } finally {
    reporter.info('londiste supervisor: stopping the worker and pgqd');
    await stopDaemons(ctx);
    await files.remove(p.supervisorPid).catch(() => undefined);
  }
}

/**
 * Makes sure the supervisor runs (detached), then waits until pgqd runs and, on a member node, the worker.
 * @throws Error when they do not come up.
 */
export async function ensureSupervisor(ctx: CommandContext, configPath: string): Promise<string> {
  const { proc, clock } = ctx.ports;
  const p = londistePaths(ctx.config);
  let d = await readDaemons(ctx);
  let note = `supervisor already running (pid ${d.supervisorPid ?? '?'})`;
  if (d.supervisorPid === undefined) {
    const pid = proc.spawnDetached(
      [process.execPath, process.argv[1] ?? 'chef-ha-ctl', '--config', configPath, 'londiste-daemons', 'run'],
      p.supervisorLog,
    );
    note = `supervisor started (pid ${pid}, log ${p.supervisorLog})`;
  } else {
    // A running supervisor notices a new node at its next pass; do that pass now.
    await superviseOnce(ctx);
  }
  const wantWorker = await isMember(ctx);
  const deadline = clock.now() + 30_000;
  for (;;) {
    d = await readDaemons(ctx);
    if (d.pgqdPid !== undefined && (!wantWorker || d.workerPid !== undefined)) {
      return `${note}; pgqd ${d.pgqdPid}${d.workerPid ? `, worker ${d.workerPid}` : ''}`;
    }
    if (clock.now() > deadline) {
      throw new Error(
        `pgqd${wantWorker ? ' and the worker' : ''} did not start within 30 s: see ${p.supervisorLog}, ${p.pgqdLog} and ${p.workerLog}`,
      );
    }
    await clock.sleep(200, ctx.signal);
  }
}

/** Stops the supervisor (which stops pgqd and the worker), or the daemons when no supervisor runs. */
export async function stopSupervisor(ctx: CommandContext): Promise<string> {
  const d = await readDaemons(ctx);
  if (d.supervisorPid === undefined) {
    await stopDaemons(ctx);
    return 'no supervisor was running; stopped pgqd and the worker where they ran';
  }
  await stopPid(ctx, d.supervisorPid, 30_000);
  await stopDaemons(ctx);
  return `stopped the supervisor (pid ${d.supervisorPid}), pgqd and the worker`;
}
