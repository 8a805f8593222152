/**
 * Commands chef-ha-ctl does not own go to chef-server-ctl with their output and exit code.
 * `reconfigure` first re-applies the recipe override when a package upgrade put the original back.
 */
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, withLock } from '../../core/context.js';
import { gatherLocalFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { planRecipeSteps } from '../common.js';
import { renderManagedFiles } from '../render.js';

export async function passthrough(ctx: CommandContext, args: readonly string[]): Promise<number> {
  if (args[0] === 'reconfigure') {
    const local = await gatherLocalFacts(ctx);
    if (local.recipe.kind === 'original' && local.recordedOriginalSha256 !== undefined) {
      ctx.reporter.warn(
        'the chef-server recipe is the original again (a package upgrade?): re-applying the chef-ha override first',
      );
      const rendered = renderManagedFiles(ctx, { role: local.pg.server?.inRecovery ? 'standby' : 'primary' });
      const plan = {
        command: 'reconfigure' as const,
        summary: 're-apply the chef-ha recipe override',
        steps: planRecipeSteps(local, ctx.config, rendered, backupDirFor(ctx.config, ctx.ports.clock.now())),
      };
      await withLock(ctx, 'reconfigure', () => executePlan(ctx, plan, { dryRun: ctx.options.dryRun }));
    }
  }
  if (ctx.options.dryRun) {
    ctx.reporter.info(`would run: ${ctx.config.chefServer.ctl} ${args.join(' ')}`);
    return 0;
  }
  const result = await ctx.ports.shell.run([ctx.config.chefServer.ctl, ...args], {
    timeoutMs: 24 * 3_600_000,
    inherit: true,
  });
  return result.exitCode;
}
