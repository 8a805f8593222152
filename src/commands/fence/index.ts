/**
 * fence: make this node stop taking writes now and on every later start, until `rejoin`. Run by hand,
 * or by the new primary's `failover` over ssh.
 */
import type { CommandContext } from '../../core/context.js';
import { statePaths, withLock } from '../../core/context.js';
import { gatherFenceFacts, type FenceFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import type { Plan, Step } from '../../core/plan.js';
import { renderFenceFile } from '../../pg/version.js';
import { serviceStep } from '../common.js';
import type { Config } from '../../core/config.js';

export interface FenceOptions {
  readonly reason: string;
}

/** Pure. */
export function planFence(local: FenceFacts, config: Config, options: FenceOptions, nowIso: string): Plan {
  const fenceFile = renderFenceFile(config.postgres.version);
  const hasSignal = fenceFile.name === 'standby.signal' ? local.standbySignal : local.recoveryConf;
  const running = local.running;
  const primary = running && local.inRecovery === false;
  const steps: Step[] = [
    {
      kind: 'action',
      id: 'record-fence',
      title: 'record the fence in the state directory',
      action: 'record-state',
      args: { path: statePaths(config).fence, data: { at: nowIso, reason: options.reason } },
      done: local.fenced ? `fenced since ${local.fenced.at}` : undefined,
    },
    {
      kind: 'action',
      id: 'write-fence-file',
      title: `write ${fenceFile.name} so that any later start is read-only`,
      action: 'write-fence-file',
      args: {},
      done: hasSignal ? `${fenceFile.name} is present` : undefined,
    },
    {
      kind: 'sql',
      id: 'make-read-only',
      title: 'make the running server read-only and end client sessions',
      on: 'local',
      database: 'postgres',
      text: "ALTER SYSTEM SET default_transaction_read_only = on;\nSELECT pg_reload_conf();\nSELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();",
      done: primary ? undefined : 'PostgreSQL is not running as a primary',
    },
    serviceStep(
      config,
      'stop',
      'stop-postgresql',
      'stop PostgreSQL',
      running ? undefined : 'PostgreSQL is not running',
    ),
  ];
  return { command: 'fence', summary: `fence ${config.node.name}: ${options.reason}`, steps };
}

export async function fence(ctx: CommandContext, options: FenceOptions): Promise<void> {
  await withLock(ctx, 'fence', async () => {
    // Few facts, gathered fast: a failover on the peer waits for this over ssh.
    const local = await gatherFenceFacts(ctx);
    const plan = planFence(local, ctx.config, options, new Date(ctx.ports.clock.now()).toISOString());
    await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  });
  if (!ctx.options.dryRun) {
    ctx.reporter.result(
      `${ctx.config.node.name} is fenced: it takes no writes until \`chef-ha-ctl rejoin\``,
      { command: 'fence', node: ctx.config.node.name, fenced: true },
    );
  }
}
