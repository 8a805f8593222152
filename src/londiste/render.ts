/** Renders the two Londiste ini files through the templates port (the only caller of it for them). */
import type { CommandContext } from '../core/context.js';
import { VERSION } from '../core/version.js';
import { pgqdIniView, workerIniView } from './names.js';
import type { RenderedLondiste } from './plan.js';

export function renderLondisteFiles(ctx: CommandContext): RenderedLondiste {
  const t = ctx.ports.templates;
  return {
    pgqdIni: t.render('templates/pgqd.ini.hbs', pgqdIniView(ctx.config, VERSION)),
    workerIni: t.render('templates/londiste.ini.hbs', workerIniView(ctx.config, VERSION)),
  };
}
