/**
 * executePlan: the only code that performs mutating steps. Dry-run is decided here, in one place.
 */
import * as path from 'node:path';
import type { CommandContext } from './context.js';
import { localTarget, peerTarget } from './context.js';
import { ChefHaError, InterruptedError, StepFailedError, describeError } from './errors.js';
import type { Plan, Probe, Step } from './plan.js';
import { SECRET_TOKEN, concurrentGroup, describeProbe, describeStep } from './plan.js';
import { runAction } from './actions.js';
import { CommandError, SqlError, urlHost } from '../ports/index.js';
import { featuresFor } from '../pg/version.js';
import { parseLsn } from '../pg/lsn.js';
import { quoteLiteral } from '../pg/conninfo.js';
import { currentTimelineQuery } from '../pg/queries.js';
import { readLocalControlData } from './control.js';

export interface ExecuteOptions {
  readonly dryRun: boolean;
}

export interface ExecuteResult {
  readonly completed: readonly string[];
  readonly skipped: readonly string[];
}

/** Whether a probe holds now. Never throws: an unreachable server is "not yet". */
export async function checkProbe(ctx: CommandContext, probe: Probe): Promise<boolean> {
  const { pg } = ctx.ports;
  const target = localTarget(ctx.config);
  const f = featuresFor(ctx.config.postgres.version);
  try {
    switch (probe.name) {
      case 'local-postgres-up':
        return (
          (await pg.queryLocal<{ ok: number }>(target, 'postgres', 'SELECT 1 AS ok', 5_000)).length === 1
        );
      case 'local-writable': {
        const rows = await pg.queryLocal<{ r: boolean }>(
          target,
          'postgres',
          'SELECT pg_is_in_recovery() AS r',
          5_000,
        );
        return rows[0]?.r === false;
      }
      case 'standby-streaming': {
        const sql = `SELECT state, sync_state FROM pg_stat_replication WHERE application_name = ${quoteLiteral(probe.applicationName)}`;
        let rows: { state: string; sync_state: string }[];
        if (probe.on === 'local') {
          rows = await pg.queryLocal(target, 'postgres', sql, 5_000);
        } else {
          const password = await ctx.secrets.read('replication');
          if (!password) {
            return false;
          }
          rows = await pg.queryPeer(peerTarget(ctx.config, password), sql);
        }
        return rows.some((r) => r.state === 'streaming' && (!probe.sync || r.sync_state === 'sync'));
      }
      case 'local-replayed': {
        const rows = await pg.queryLocal<{ lsn: string | null }>(
          target,
          'postgres',
          `SELECT ${f.fn.replayLsn}()::text AS lsn`,
          5_000,
        );
        const lsn = rows[0]?.lsn;
        return lsn !== null && lsn !== undefined && parseLsn(lsn) >= parseLsn(probe.lsn);
      }
      case 'peer-replayed-local-checkpoint': {
        const control = await readLocalControlData(ctx);
        const password = await ctx.secrets.read('replication');
        if (!control?.checkpointLsn || !password) {
          return false;
        }
        const rows = await pg.queryPeer<{ lsn: string | null }>(
          peerTarget(ctx.config, password),
          `SELECT ${f.fn.replayLsn}()::text AS lsn`,
        );
        const lsn = rows[0]?.lsn;
        // The replay position is the end of the last record replayed: past the checkpoint record's start.
        return lsn !== null && lsn !== undefined && parseLsn(lsn) > parseLsn(control.checkpointLsn);
      }
      case 'peer-checkpointed': {
        const password = await ctx.secrets.read('replication');
        if (!password) {
          return false;
        }
        const rows = await pg.queryPeer<{ ok: boolean }>(
          peerTarget(ctx.config, password),
          `SELECT (SELECT timeline_id FROM pg_control_checkpoint()) = (${currentTimelineQuery(f)}) AS ok`,
        );
        return rows[0]?.ok === true;
      }
      case 'health-not-primary': {
        const { node, peer, health } = ctx.config;
        const [address, port] =
          probe.on === 'peer' ? [peer.address, peer.healthPort] : [node.address, health.port];
        // A refused connection: no health endpoint runs there, so none can answer 200 either.
        const status = await ctx.ports.http.statusOrRefused(
          `http://${urlHost(address)}:${port}/primary`,
          1_000,
        );
        return status === 'refused' || (status !== 0 && status !== 200);
      }
    }
  } catch {
    return false;
  }
}

async function resolveOwner(
  ctx: CommandContext,
  owner: string | undefined,
): Promise<{ uid: number; gid: number } | undefined> {
  if (owner === undefined || !ctx.ports.proc.isRoot) {
    return undefined;
  }
  const ids = await ctx.ports.files.lookupUser(owner);
  if (!ids) {
    throw new Error(`unknown OS user "${owner}"`);
  }
  return ids;
}

async function performStep(ctx: CommandContext, step: Step): Promise<string | undefined> {
  const { shell, pg, files, clock } = ctx.ports;
  switch (step.kind) {
    case 'run': {
      if (step.background) {
        const { log } = step.background;
        await files.mkdirp(path.dirname(log), 0o700);
        await files.removeTree(log);
        await files.removeTree(`${log}.exit`);
        // sh records the exit status beside the log when the command ends ("$0" is the status file).
        const argv: [string, ...string[]] = [
          ...(step.user === undefined ? [] : ['runuser', '-u', step.user, '--']),
          ...(step.env === undefined
            ? []
            : ['env', ...Object.entries(step.env).map(([k, v]) => `${k}=${v}`)]),
          'sh',
          '-c',
          '"$@"; echo $? >"$0"',
          `${log}.exit`,
          ...step.argv,
        ] as [string, ...string[]];
        const pid = ctx.ports.proc.spawnDetached(argv, log);
        await files.writeAtomic(
          step.background.job,
          `${JSON.stringify({ pid, argv: step.argv, log: step.background.log, startedAt: new Date(clock.now()).toISOString() }, null, 2)}\n`,
          0o600,
        );
        return `running in the background (pid ${pid}); log: ${step.background.log}`;
      }
      if (step.before) {
        const hook = await shell.run(step.before.argv, { timeoutMs: step.before.timeoutMs });
        if (hook.exitCode !== 0) {
          throw new CommandError(
            step.before.argv.join(' '),
            hook.exitCode,
            hook.stderr || hook.stdout,
            `the pre-start hook exited ${hook.exitCode}, so ${step.argv[0]} was not run`,
          );
        }
      }
      const result = await shell.run(step.argv, {
        user: step.user,
        env: step.env,
        timeoutMs: step.timeoutMs,
        onStderr: step.progress
          ? (text) => {
              ctx.reporter.progress(text);
            }
          : undefined,
        inherit: step.showOutput,
      });
      if (result.exitCode !== 0) {
        throw new CommandError(
          describeStep(step).replace(/^run /, ''),
          result.exitCode,
          result.stderr || result.stdout,
          `exited ${result.exitCode}`,
        );
      }
      return undefined;
    }
    case 'sql': {
      if (step.on === 'local') {
        await pg.execLocal(localTarget(ctx.config), step.database, step.text);
      } else {
        const password = await ctx.secrets.read('replication');
        if (!password) {
          throw new Error('no replication secret to reach the peer');
        }
        await pg.queryPeer(peerTarget(ctx.config, password), step.text);
      }
      return undefined;
    }
    case 'write': {
      let content = step.content;
      if (step.secret) {
        const value = await ctx.secrets.read(step.secret);
        if (!value) {
          throw new Error(`secret "${step.secret}" is missing from the state directory`);
        }
        content = content.split(SECRET_TOKEN).join(value);
      }
      const owner = await resolveOwner(ctx, step.owner);
      await files.mkdirp(path.dirname(step.path), 0o755);
      await files.writeAtomic(step.path, content, step.mode, owner);
      return undefined;
    }
    case 'remove':
      await files.removeTree(step.path);
      return undefined;
    case 'backup': {
      await files.mkdirp(path.dirname(step.to), 0o700);
      if (!(await files.exists(step.from))) {
        return 'nothing to back up';
      }
      if (step.method === 'move') {
        const [a, b] = [await files.stat(step.from), await files.stat(path.dirname(step.to))];
        if (a && b && a.dev === b.dev) {
          await files.rename(step.from, step.to);
          return `moved to ${step.to}`;
        }
      }
      const result = await shell.run(['cp', '-a', step.from, step.to], { timeoutMs: 3_600_000 });
      if (result.exitCode !== 0) {
        throw new CommandError(
          `cp -a ${step.from} ${step.to}`,
          result.exitCode,
          result.stderr,
          `exited ${result.exitCode}`,
        );
      }
      if (step.method === 'move') {
        await files.removeTree(step.from);
      }
      return `saved in ${step.to}`;
    }
    case 'wait': {
      const deadline = clock.now() + step.timeoutMs;
      for (;;) {
        if (await checkProbe(ctx, step.until)) {
          return undefined;
        }
        if (clock.now() >= deadline) {
          if (step.onTimeout === 'continue') {
            ctx.reporter.warn(
              `${step.id}: not seen within ${(step.timeoutMs / 1000).toFixed(1)}s that ${describeProbe(step.until)}; going on`,
            );
            return undefined;
          }
          throw new Error(
            `timed out after ${(step.timeoutMs / 1000).toFixed(0)}s waiting until ${describeProbe(step.until)}`,
          );
        }
        await clock.sleep(step.intervalMs, ctx.signal);
      }
    }
    case 'action':
      return runAction(ctx, step.action, step.args);
  }
}

function recoveryHint(plan: Plan, completed: readonly string[]): string {
  const irreversible = plan.steps.filter((s) => s.irreversible && completed.includes(s.id)).map((s) => s.id);
  if (irreversible.length > 0) {
    return `steps ${irreversible.join(', ')} cannot be undone: fix the cause above, then run \`chef-ha-ctl ${plan.command}\` again (done steps are skipped) or \`chef-ha-ctl status\` to see where the pair stands${plan.backupDir ? `; backups are in ${plan.backupDir}` : ''}`;
  }
  return `fix the cause above and run \`chef-ha-ctl ${plan.command}\` again: completed steps are found done and skipped${plan.backupDir ? `; backups are in ${plan.backupDir}` : ''}`;
}

/**
 * Runs a plan step by step, or only shows it when dry.
 * @throws StepFailedError naming the failed step, its cause and the completed steps.
 * @throws InterruptedError on SIGINT, after the current step.
 */
export async function executePlan(
  ctx: CommandContext,
  plan: Plan,
  options: ExecuteOptions,
): Promise<ExecuteResult> {
  const { reporter, clock } = { reporter: ctx.reporter, clock: ctx.ports.clock };
  if (options.dryRun) {
    reporter.showPlan(plan, true);
    return { completed: [], skipped: plan.steps.filter((s) => s.done).map((s) => s.id) };
  }
  reporter.showPlan(plan, false);
  const completed: string[] = [];
  const skipped: string[] = [];
  const total = plan.steps.length;
  const failure = (step: Step, error: unknown): StepFailedError => {
    const detail =
      error instanceof SqlError || error instanceof CommandError
        ? error.message
        : error instanceof ChefHaError
          ? error.message
          : describeError(error);
    return new StepFailedError(
      step.id,
      `${step.title}\n${detail}`,
      completed,
      recoveryHint(plan, completed),
      {
        cause: error,
      },
    );
  };
  const runOne = async (i: number, step: Step): Promise<void> => {
    reporter.stepStart(i + 1, total, step);
    reporter.log(`    ${describeStep(step)}`);
    const started = clock.now();
    const note = await performStep(ctx, step);
    reporter.stepDone(i + 1, total, step, clock.now() - started, note);
    completed.push(step.id);
  };
  for (let i = 0; i < total;) {
    if (ctx.signal.aborted) {
      throw new InterruptedError(completed);
    }
    const group = concurrentGroup(plan, i);
    const todo: [number, Step][] = [];
    for (const [k, step] of group.entries()) {
      if (step.done) {
        reporter.stepSkipped(i + k + 1, total, step, step.done);
        skipped.push(step.id);
      } else {
        todo.push([i + k, step]);
      }
    }
    // Steps of one group all run to their end, even when one fails: a half-run reconfigure is worse
    // than a finished one. The first failure (in plan order) is reported.
    const results = await Promise.allSettled(todo.map(([k, step]) => runOne(k, step)));
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (ctx.signal.aborted) {
      throw new InterruptedError(completed);
    }
    const failedStep = todo[failed];
    const failedResult = results[failed];
    if (failedStep && failedResult?.status === 'rejected') {
      throw failure(failedStep[1], failedResult.reason);
    }
    i += group.length;
  }
  return { completed, skipped };
}
