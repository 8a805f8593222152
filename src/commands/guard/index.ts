/**
 * guard: run before PostgreSQL starts (systemd ExecStartPre=, or postgres.preStartHook). Exit 0 lets the
 * start go on: read-only when this node is fenced or superseded. A non-zero exit stops the start.
 */
import type { CommandContext } from '../../core/context.js';
import { statePaths, withLock } from '../../core/context.js';
import { executePlan } from '../../core/execute.js';
import { decideGuard, gatherGuardFacts } from '../../monitor/guard.js';
import { planFence } from '../fence/index.js';

/** The pid of a live `chef-ha-ctl rejoin` that holds this node's lock, if one does. */
async function rejoinHoldingLock(ctx: CommandContext): Promise<number | undefined> {
  const text = await ctx.ports.files.readTextIfExists(statePaths(ctx.config).lock).catch(() => undefined);
  try {
    const holder = text ? (JSON.parse(text) as { pid?: unknown; command?: unknown }) : undefined;
    return holder?.command === 'rejoin' &&
      typeof holder.pid === 'number' &&
      ctx.ports.proc.isAlive(holder.pid)
      ? holder.pid
      : undefined;
  } catch {
    return undefined;
  }
}

export async function guard(ctx: CommandContext): Promise<void> {
  const facts = await gatherGuardFacts(ctx);
  const decision = decideGuard(facts, ctx.config);
  if (decision.action === 'allow') {
    ctx.reporter.info(`guard: ${decision.reason}`);
    ctx.reporter.result(`start allowed: ${decision.reason}`, {
      command: 'guard',
      node: ctx.config.node.name,
      action: 'allow',
      reason: decision.reason,
    });
    return;
  }
  // `rejoin` lifts the fence itself: in Londiste mode it starts PostgreSQL writable (erchef stopped) to
  // copy the tables afresh, holding the lock. Fencing again then would undo it, and could not take the lock.
  const rejoin = await rejoinHoldingLock(ctx);
  if (rejoin !== undefined) {
    const reason = `rejoin (pid ${rejoin}) holds the lock and lifts the fence itself`;
    ctx.reporter.info(`guard: ${reason}`);
    ctx.reporter.result(`start allowed: ${reason}`, {
      command: 'guard',
      node: ctx.config.node.name,
      action: 'allow',
      reason,
    });
    return;
  }
  ctx.reporter.info(`guard: ${decision.reason}`);
  await withLock(ctx, 'guard', async () => {
    const plan = planFence(
      facts.fence,
      ctx.config,
      { reason: `guard: ${decision.reason}` },
      new Date(ctx.ports.clock.now()).toISOString(),
    );
    await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  });
  ctx.reporter.result(`start allowed read-only: ${ctx.config.node.name} is fenced`, {
    command: 'guard',
    node: ctx.config.node.name,
    action: 'fence',
    reason: decision.reason,
  });
}
