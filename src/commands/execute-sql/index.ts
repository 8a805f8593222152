/**
 * execute-sql FILE (londiste mode, on the master): schema changes go through `londiste execute`, which
 * runs the file on the root and then, in queue order, on the branch. DDL is not replicated otherwise, and
 * a column added on the master only stalls the slave's worker until the slave has it too.
 */
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { CommandContext } from '../../core/context.js';
import { localTarget, withLock } from '../../core/context.js';
import type { Config } from '../../core/config.js';
import { RefusedError, UsageError } from '../../core/errors.js';
import type { Plan } from '../../core/plan.js';
import { executePlan } from '../../core/execute.js';
import { quoteLiteral } from '../../pg/conninfo.js';
import { readLocalNodeState, type NodeState } from '../../londiste/facts.js';
import { londistePaths } from '../../londiste/names.js';
import { londisteStep } from '../../londiste/plan.js';
import { confirmPlan } from '../confirm.js';

/** The name the file is applied under: its base name plus a short hash of its content (a changed file runs again). */
export function executeName(file: string, content: string): string {
  const base = path.basename(file).replace(/[^A-Za-z0-9_.-]/g, '_');
  const hash = createHash('sha256').update(content).digest('hex').slice(0, 12);
  return `${base.replace(/\.sql$/, '')}-${hash}.sql`;
}

/**
 * Plans execute-sql. Pure.
 * @throws RefusedError off the root or outside londiste mode.
 */
export function planExecuteSql(
  config: Config,
  state: NodeState,
  name: string,
  content: string,
  applied: boolean,
): Plan {
  if (config.replication.mode !== 'londiste') {
    throw new RefusedError(
      'execute-sql is for londiste mode (streaming replicates DDL by itself: run the SQL on the primary); nothing was changed',
    );
  }
  if (state.nodeType !== 'root') {
    throw new RefusedError(
      `${config.node.name} is ${state.nodeType ? `a Londiste ${state.nodeType}` : 'not a Londiste node'}, not the root of queue ${config.londiste.queue}; nothing was changed`,
      undefined,
      'run execute-sql on the master (the root): it applies the file there and then, in queue order, on the slave',
    );
  }
  const dest = path.join(londistePaths(config).etc, 'execute', name);
  return {
    command: 'execute-sql',
    summary: applied
      ? `${name} was applied already`
      : `apply ${name} on ${config.node.name} and, through queue ${config.londiste.queue}, on ${config.peer.name}`,
    steps: [
      {
        kind: 'write',
        id: 'stage-sql-file',
        title: `copy the file where the PostgreSQL OS user can read it (${dest})`,
        path: dest,
        content,
        mode: 0o644,
        done: applied ? 'applied already' : undefined,
      },
      londisteStep(
        config,
        'londiste-execute',
        `londiste execute ${name}`,
        ['execute', dest],
        applied ? 'applied already (londiste.applied_execute)' : undefined,
        600_000,
      ),
    ],
  };
}

export async function executeSql(ctx: CommandContext, file: string): Promise<void> {
  const content = await ctx.ports.files.readTextIfExists(file);
  if (content === undefined) {
    throw new UsageError(`${file} does not exist`, 'give the path of an SQL file');
  }
  await withLock(ctx, 'execute-sql', async () => {
    const state = await readLocalNodeState(ctx);
    const name = executeName(file, content);
    let applied = false;
    if (state.nodeType === 'root') {
      const rows = await ctx.ports.pg.queryLocal<{ n: number | string }>(
        localTarget(ctx.config),
        ctx.config.chefServer.database,
        `SELECT count(*) AS n FROM londiste.applied_execute WHERE queue_name = ${quoteLiteral(ctx.config.londiste.queue)} AND execute_file = ${quoteLiteral(name)}`,
      );
      applied = Number(rows[0]?.n ?? 0) > 0;
    }
    const plan = planExecuteSql(ctx.config, state, name, content, applied);
    await confirmPlan(ctx, plan);
    await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (!ctx.options.dryRun) {
      ctx.reporter.result(
        `${name} ${applied ? 'was applied before' : 'applied'} on ${ctx.config.node.name}; ${ctx.config.peer.name} applies it in queue order (see \`chef-ha-ctl status\`)`,
        { command: 'execute-sql', name, applied: !applied },
      );
    }
  });
}
