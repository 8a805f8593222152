/**
 * londiste-daemons: the supervisor of pgqd and the worker. `run` stays in the foreground (what a systemd
 * or runit service runs); `start` detaches it and waits for the daemons; `stop` stops it and them by pid;
 * `status` prints the pids.
 */
import type { CommandContext } from '../../core/context.js';
import { RefusedError } from '../../core/errors.js';
import { ensureSupervisor, runSupervisor, stopSupervisor } from '../../londiste/daemons.js';
import { readDaemons } from '../../londiste/facts.js';
import { londistePaths } from '../../londiste/names.js';

export async function londisteDaemons(
  ctx: CommandContext,
  action: 'run' | 'start' | 'stop' | 'status',
): Promise<void> {
  if (ctx.config.replication.mode !== 'londiste') {
    throw new RefusedError(
      `replication.mode is "${ctx.config.replication.mode}": there are no Londiste daemons to supervise; nothing was changed`,
    );
  }
  const p = londistePaths(ctx.config);
  switch (action) {
    case 'run':
      await runSupervisor(ctx);
      return;
    case 'start': {
      if (!(await ctx.ports.files.exists(p.pgqdIni))) {
        throw new RefusedError(
          `${p.pgqdIni} does not exist: this node is not set up for Londiste; nothing was changed`,
          undefined,
          'run `chef-ha-ctl setup-master` or `setup-slave` first',
        );
      }
      const note = await ensureSupervisor(ctx, ctx.options.configPath);
      ctx.reporter.result(note, { command: 'londiste-daemons', action, note });
      return;
    }
    case 'stop': {
      const note = await stopSupervisor(ctx);
      ctx.reporter.result(note, { command: 'londiste-daemons', action, note });
      return;
    }
    case 'status': {
      const d = await readDaemons(ctx);
      ctx.reporter.result(
        `supervisor ${d.supervisorPid ?? 'not running'}, pgqd ${d.pgqdPid ?? 'not running'}, worker ${d.workerPid ?? 'not running'} (logs in ${p.log})`,
        { command: 'londiste-daemons', action, ...d },
      );
    }
  }
}
