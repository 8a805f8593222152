/** setup-master: gather → plan → confirm → execute → report. */
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { planSetupMaster, type SetupMasterOptions } from './plan.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';
import { statePaths } from '../../core/context.js';

export async function setupMaster(ctx: CommandContext, options: SetupMasterOptions): Promise<void> {
  await withLock(ctx, 'setup-master', () => run(ctx, options));
}

async function run(ctx: CommandContext, options: SetupMasterOptions): Promise<void> {
  const facts = await gatherPairFacts(ctx);
  const rendered = renderManagedFiles(ctx, { role: 'primary' });
  const plan = planSetupMaster({
    facts,
    config: ctx.config,
    options,
    rendered,
    settingsLines: rendered.settingsLines,
    backupDir: backupDirFor(ctx.config, ctx.ports.clock.now()),
  });
  await confirmPlan(ctx, plan);
  const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  if (!ctx.options.dryRun) {
    ctx.reporter.result(
      `${ctx.config.node.name} is the master. Join bundle: ${statePaths(ctx.config).bundle}\nnext, on ${ctx.config.peer.name}: chef-ha-ctl setup-slave --bundle <copy of that file>  (or --from-master ${ctx.config.peer.ssh ? 'with peer.ssh' : 'root@' + ctx.config.node.address})`,
      {
        command: 'setup-master',
        node: ctx.config.node.name,
        bundle: statePaths(ctx.config).bundle,
        completed: result.completed,
        skipped: result.skipped,
        backupDir: plan.backupDir,
      },
    );
  }
}
