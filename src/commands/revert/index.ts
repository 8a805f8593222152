/** revert: gather → plan → confirm → execute → report. */
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, withLock } from '../../core/context.js';
import { gatherLocalFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { sha256Hex } from '../../chef/recipe.js';
import { recipePath } from '../../chef/paths.js';
import { confirmPlan } from '../confirm.js';
import { planRevert } from './plan.js';

export async function revert(ctx: CommandContext): Promise<void> {
  await withLock(ctx, 'revert', async () => {
    const local = await gatherLocalFacts(ctx);
    const kept = `${recipePath(ctx.config)}.chef-ha-original`;
    const keptOriginalSha256 = (await ctx.ports.files.exists(kept))
      ? sha256Hex(await ctx.ports.files.readBytes(kept))
      : undefined;
    const plan = planRevert({
      local,
      config: ctx.config,
      keptOriginalSha256,
      backupDir: backupDirFor(ctx.config, ctx.ports.clock.now()),
    });
    await confirmPlan(ctx, plan);
    const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (!ctx.options.dryRun) {
      ctx.reporter.result(
        `chef-server on ${ctx.config.node.name} runs on its embedded PostgreSQL again. Backups: ${plan.backupDir ?? '-'}`,
        {
          command: 'revert',
          node: ctx.config.node.name,
          completed: result.completed,
          skipped: result.skipped,
          backupDir: plan.backupDir,
        },
      );
    }
  });
}
