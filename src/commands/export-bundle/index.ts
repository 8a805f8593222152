/** export-bundle: write the join bundle again, to a file or to stdout (for setup-slave --from-master). */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { CommandContext } from '../../core/context.js';
import { executePlan } from '../../core/execute.js';
import { gatherLocalFacts } from '../../core/facts.js';
import { RefusedError } from '../../core/errors.js';
import type { Plan } from '../../core/plan.js';
import { slotOf } from '../common.js';

export async function exportBundle(ctx: CommandContext, options: { output?: string }): Promise<void> {
  const local = await gatherLocalFacts(ctx);
  if (!local.secretPresent || !local.pg.replicationRoleExists) {
    throw new RefusedError(
      `${ctx.config.node.name} is not set up as master (no replication role or secret); nothing was written`,
      undefined,
      'run `chef-ha-ctl setup-master` first',
    );
  }
  if (local.pg.server?.inRecovery !== false) {
    throw new RefusedError(
      `${ctx.config.node.name} is not a writable primary; a join bundle must come from the master`,
      undefined,
      'run export-bundle on the primary (`chef-ha-ctl status` shows which)',
    );
  }
  const toStdout = options.output === undefined;
  const output =
    options.output ?? path.join(ctx.config.stateDir, `.export-${randomBytes(4).toString('hex')}.tar.gz`);
  const plan: Plan = {
    command: 'setup-master',
    summary: `export the join bundle for ${ctx.config.peer.name}`,
    steps: [
      {
        kind: 'action',
        id: 'write-join-bundle',
        title: `write the join bundle to ${toStdout ? 'stdout' : output}`,
        action: 'write-bundle',
        args: { output: path.resolve(output), slotName: slotOf(ctx.config.peer.name) },
      },
    ],
  };
  try {
    await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (ctx.options.dryRun) {
      return;
    }
    if (toStdout) {
      ctx.reporter.raw(await ctx.ports.files.readBytes(output));
    } else {
      ctx.reporter.result(
        `join bundle written to ${output} (mode 0600; it holds private keys and the replication password)`,
        { bundle: output },
      );
    }
  } finally {
    if (toStdout) {
      await ctx.ports.files.remove(output);
    }
  }
}
