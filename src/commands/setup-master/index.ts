/** setup-master: gather → plan → confirm → execute → report. */
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { planSetupMaster, type SetupMasterOptions } from './plan.js';
import { planSetupMasterLondiste } from './londiste.js';
import { gatherLondisteFacts } from '../../londiste/facts.js';
import { renderLondisteFiles } from '../../londiste/render.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';
import { statePaths } from '../../core/context.js';

/** Whether the passfile holds the stored replication secret. */
export async function passfileCurrent(ctx: CommandContext): Promise<boolean> {
  const secret = await ctx.secrets.read('replication');
  const text = await ctx.ports.files.readTextIfExists(ctx.config.postgres.passfile).catch(() => undefined);
  return (
    secret !== undefined && text !== undefined && text.includes(`:${ctx.config.replication.user}:${secret}`)
  );
}

export async function setupMaster(ctx: CommandContext, options: SetupMasterOptions): Promise<void> {
  await withLock(ctx, 'setup-master', () => run(ctx, options));
}

async function run(ctx: CommandContext, options: SetupMasterOptions): Promise<void> {
  const facts = await gatherPairFacts(ctx);
  const rendered = renderManagedFiles(ctx, { role: 'primary' });
  const base = {
    facts,
    config: ctx.config,
    options,
    rendered,
    settingsLines: rendered.settingsLines,
    backupDir: backupDirFor(ctx.config, ctx.ports.clock.now()),
  };
  const plan =
    ctx.config.replication.mode === 'londiste'
      ? planSetupMasterLondiste({
          ...base,
          londiste: await gatherLondisteFacts(ctx),
          renderedLondiste: renderLondisteFiles(ctx),
          installPackages: options.installPackages ?? false,
          passfileCurrent: await passfileCurrent(ctx),
        })
      : planSetupMaster(base);
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
