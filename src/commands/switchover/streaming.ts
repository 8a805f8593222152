/**
 * switchover for streaming replication: gather → decide → (delegate | demote, then rejoin) → report.
 * Every step leaves a state a re-run resumes from: see docs/design.md "Switchover".
 */
import type { CommandContext } from '../../core/context.js';
import { withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { readLocalControlData } from '../../core/control.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError } from '../../core/errors.js';
import { CommandError } from '../../ports/index.js';
import { renderSshArgv } from '../../chef/ssh.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';
import { runRejoin } from '../rejoin/streaming.js';
import type { SwitchoverCliOptions } from './index.js';
import { decideSwitchover, planSwitchoverDemote, planSwitchoverPromote } from './plan.js';

export async function switchoverStreaming(ctx: CommandContext, options: SwitchoverCliOptions): Promise<void> {
  if (options.promoteStandby) {
    await withLock(ctx, 'switchover', () => promoteHere(ctx));
    return;
  }
  const started = ctx.ports.clock.now();
  // Decided once before the lock only to see whether this run hands over to the primary (which then
  // takes this node's lock when it promotes it); everything else is decided again under the lock.
  const first = decideSwitchover(
    { pair: await gatherPairFacts(ctx) },
    ctx.config,
    options.to === undefined ? {} : { to: options.to },
  );
  if (first.action === 'delegate') {
    await delegate(ctx, first.target, first.reason);
    return;
  }
  await withLock(ctx, 'switchover', () => demoteAndRejoin(ctx, options, started));
}

async function delegate(ctx: CommandContext, target: string, reason: string): Promise<void> {
  const args = ['switchover', '--yes', '--to', target, ...(ctx.options.dryRun ? ['--dry-run'] : [])];
  const argv = renderSshArgv(ctx.config, args);
  if (!argv) {
    throw new RefusedError('switchover: peer.ssh is not configured; nothing was changed');
  }
  ctx.reporter.info(`switchover: ${reason}; running it on ${ctx.config.peer.name} over ssh`);
  const r = await ctx.ports.shell.run(argv, { timeoutMs: 3_600_000, inherit: true });
  if (r.exitCode === 4) {
    throw new RefusedError(`switchover: ${ctx.config.peer.name} refused (see above); nothing was changed`);
  }
  if (r.exitCode !== 0) {
    throw new CommandError(
      argv.join(' '),
      r.exitCode,
      r.stderr,
      `the switchover on ${ctx.config.peer.name} failed (exit ${r.exitCode}, see above); run \`chef-ha-ctl switchover\` again to resume`,
    );
  }
}

async function demoteAndRejoin(
  ctx: CommandContext,
  options: SwitchoverCliOptions,
  started: number,
): Promise<void> {
  const config = ctx.config;
  const [pair, control] = await Promise.all([gatherPairFacts(ctx), readLocalControlData(ctx)]);
  const facts = { pair, ...(control ? { control } : {}) };
  const decision = decideSwitchover(facts, config, options.to === undefined ? {} : { to: options.to });
  switch (decision.action) {
    case 'refuse':
      throw new RefusedError(
        `switchover: refusing: ${decision.reason}; nothing was changed`,
        undefined,
        decision.hint,
      );
    case 'done':
      ctx.reporter.result(`switchover: nothing to do: ${decision.reason}.`, {
        command: 'switchover',
        already: true,
        primary: pair.local.pg.server?.inRecovery === false ? config.node.name : config.peer.name,
      });
      return;
    case 'delegate':
      throw new RefusedError(
        `switchover: ${config.node.name} became a standby while this run waited for its lock; nothing was changed`,
        undefined,
        'run switchover again',
      );
    case 'demote': {
      const plan = planSwitchoverDemote(
        facts,
        decision,
        config,
        new Date(ctx.ports.clock.now()).toISOString(),
      );
      await confirmPlan(ctx, plan, `Stop ${config.node.name} and promote ${decision.target}?`);
      await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
      if (ctx.options.dryRun) {
        ctx.reporter.info(
          `then: rejoin ${config.node.name} as the standby of ${decision.target} (planned from fresh facts once ${decision.target} is promoted)`,
        );
        return;
      }
      break;
    }
    case 'rejoin':
      ctx.reporter.info(`switchover: ${decision.target} is promoted already; ${config.node.name} rejoins it`);
      break;
  }
  const target = decision.target;
  // The rejoin path: fresh facts, its own plan (a clean switchover needs no rewind).
  await runRejoin(ctx, { basebackup: false, backupDataDir: false });
  if (!ctx.options.dryRun) {
    const seconds = Number(((ctx.ports.clock.now() - started) / 1000).toFixed(2));
    ctx.reporter.result(
      `switchover done: ${target} is the primary and ${config.node.name} its standby (${seconds}s).`,
      {
        command: 'switchover',
        primary: target,
        standby: config.node.name,
        seconds,
      },
    );
  }
}

/** On the standby, asked by the old primary once this node has replayed all of its WAL. */
async function promoteHere(ctx: CommandContext): Promise<void> {
  const config = ctx.config;
  const facts = await gatherPairFacts(ctx);
  const server = facts.local.pg.server;
  const peerServer = facts.peer.reachable ? facts.peer.server : undefined;
  if (!server) {
    throw new RefusedError(
      `switchover: refusing to promote: ${config.node.name}'s PostgreSQL is not running; nothing was changed`,
      undefined,
      `start it and run \`chef-ha-ctl switchover\` on ${config.peer.name} again`,
    );
  }
  if (peerServer && !peerServer.inRecovery && !peerServer.readOnlyDefault) {
    throw new RefusedError(
      `switchover: refusing to promote: ${config.peer.name} still answers as a writable primary; nothing was changed`,
      undefined,
      `the switchover stops ${config.peer.name} first: run \`chef-ha-ctl switchover\` there`,
    );
  }
  if (!server.inRecovery && !facts.local.failoverInProgress) {
    ctx.reporter.result(`${config.node.name} is the primary already: nothing to promote.`, {
      command: 'switchover',
      promoted: true,
      already: true,
    });
    return;
  }
  const rendered = renderManagedFiles(ctx, { role: 'primary' });
  const plan = planSwitchoverPromote(facts, config, rendered.chefHaConf);
  await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  if (!ctx.options.dryRun) {
    ctx.reporter.result(`${config.node.name} is the primary now.`, { command: 'switchover', promoted: true });
  }
}
