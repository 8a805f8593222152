/**
 * pause / resume: stop and restart automatic failover cluster-wide, through the `paused` key in etcd
 * (src/monitor/dcs.ts). While paused, the monitors renew the leader key and fence a superseded primary
 * as usual, but no standby takes the key over.
 */
import type { CommandContext } from '../../core/context.js';
import { ConfigError, StepFailedError, describeError } from '../../core/errors.js';
import type { Dcs } from '../../monitor/dcs.js';

export interface PauseOptions {
  readonly reason: string;
}

/** Opens the store; ConfigError naming the fix when no endpoints are configured. */
export async function openConfiguredDcs(ctx: CommandContext, command: string): Promise<Dcs> {
  if (ctx.config.dcs.etcd.endpoints.length === 0) {
    throw new ConfigError(
      `${command} needs the etcd of automatic failover, and dcs.etcd.endpoints is empty`,
      [],
      'set dcs.etcd.endpoints (and failover.automatic) in the config; see docs/configuration.md',
    );
  }
  const { openEtcdDcs } = await import('../../monitor/dcs.js');
  return openEtcdDcs(ctx.config);
}

async function setPaused(ctx: CommandContext, command: 'pause' | 'resume', reason: string): Promise<void> {
  const { config, reporter } = ctx;
  const key = `${config.dcs.etcd.prefix}/paused`;
  if (ctx.options.dryRun) {
    reporter.result(
      command === 'pause'
        ? `would write ${key} in etcd (${config.dcs.etcd.endpoints.join(', ')}): no automatic failover until resume`
        : `would delete ${key} in etcd (${config.dcs.etcd.endpoints.join(', ')}): automatic failover resumes`,
      { command, dryRun: true, key },
    );
    return;
  }
  const dcs = await openConfiguredDcs(ctx, command);
  try {
    const at = new Date(ctx.ports.clock.now()).toISOString();
    try {
      await dcs.setPaused(command === 'pause' ? { at, by: config.node.name, reason } : undefined);
    } catch (error) {
      throw new StepFailedError(
        command,
        `etcd (${config.dcs.etcd.endpoints.join(', ')}) did not take the change: ${describeError(error)}`,
        [],
        'check that etcd runs and answers from this node (`chef-ha-ctl status` shows whether it is reachable), then run it again',
      );
    }
  } finally {
    dcs.close();
  }
  reporter.result(
    command === 'pause'
      ? `automatic failover is paused cluster-wide (${key}); run \`chef-ha-ctl resume\` to switch it back on`
      : `automatic failover is resumed cluster-wide (${key} removed)`,
    { command, key, paused: command === 'pause' },
  );
}

/** Writes the paused key (`resume` passes command 'resume' to delete it). */
export async function pause(
  ctx: CommandContext,
  options: PauseOptions,
  command: 'pause' | 'resume' = 'pause',
): Promise<void> {
  await setPaused(ctx, command, options.reason);
}
