/** haproxy-config: render haproxy.cfg (and its server-state seed) for this pair. Reads nothing but the config. */
import type { CommandContext } from '../../core/context.js';
import { VERSION } from '../../core/version.js';
import { haproxyStateView, haproxyView } from '../../haproxy/view.js';

export interface HaproxyConfigOptions {
  readonly output?: string;
  /** Print the server-state seed instead of the config. */
  readonly state: boolean;
}

/** The two renderings. */
export function renderHaproxy(ctx: CommandContext): { cfg: string; state: string } {
  return {
    cfg: ctx.ports.templates.render('templates/haproxy.cfg.hbs', haproxyView(ctx.config, VERSION)),
    state: ctx.ports.templates.render('templates/haproxy-state.hbs', haproxyStateView(ctx.config)),
  };
}

export async function haproxyConfig(ctx: CommandContext, options: HaproxyConfigOptions): Promise<void> {
  const { cfg, state } = renderHaproxy(ctx);
  if (options.output === undefined) {
    ctx.reporter.result(options.state ? state : cfg, { haproxyCfg: cfg, serverState: state });
    return;
  }
  const stateFile = ctx.config.haproxy.stateFile;
  if (ctx.options.dryRun) {
    ctx.reporter.info(`would write ${options.output} and ${stateFile}`);
    return;
  }
  await ctx.ports.files.writeAtomic(options.output, cfg, 0o644);
  await ctx.ports.files.writeAtomic(stateFile, state, 0o644);
  ctx.reporter.result(`wrote ${options.output} and the DOWN server-state seed ${stateFile}`, {
    output: options.output,
    stateFile,
  });
}
