/**
 * health-server: the HTTP endpoint HAProxy checks (DESIGN.md section 6). Runs until interrupted (SIGINT or
 * SIGTERM); logs state changes (timestamped, as the monitor's events), not requests.
 */
import type { CommandContext } from '../../core/context.js';
import { ChefHaError, ExitCode } from '../../core/errors.js';
import { probeHealth } from '../../health/probe.js';
import { startHealthServer } from '../../health/server.js';

class ListenError extends ChefHaError {
  readonly exitCode = ExitCode.StepFailed;
}

export async function healthServer(ctx: CommandContext): Promise<void> {
  const h = ctx.config.health;
  let running;
  try {
    running = await startHealthServer({
      listen: h.listen,
      port: h.port,
      refreshMs: h.refreshMs,
      staleMs: h.staleMs,
      maxConnections: h.maxConnections,
      requestTimeoutMs: h.requestTimeoutMs,
      recheckAfterGapMs: h.recheckAfterGapMs,
      probe: () => probeHealth(ctx),
      now: () => ctx.ports.clock.now(),
      onChange: (text) => {
        // timestamped: the log of a long-running service is read against other nodes' logs
        ctx.reporter.event(`health: ${text}`, { event: 'health', text });
      },
      onError: (text) => {
        ctx.reporter.warn(`health: ${text}`);
      },
    });
  } catch (error) {
    throw new ListenError(
      `health-server: cannot listen on ${h.listen}:${h.port}: ${error instanceof Error ? error.message : String(error)}`,
      'another process may hold the port (ss -ltnp); change health.listen / health.port in the config',
      { cause: error },
    );
  }
  ctx.reporter.info(
    `health: listening on ${h.listen}:${running.port} (refresh ${h.refreshMs} ms, stale after ${h.staleMs} ms)`,
  );
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) {
      resolve();
      return;
    }
    ctx.signal.addEventListener('abort', () => {
      resolve();
    });
  });
  await running.close();
  ctx.reporter.info('health: stopped');
}
