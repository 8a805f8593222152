/**
 * Renders the files chef-ha manages through the templates port, for planners to compare with what is
 * installed. The only place commands call the templates port.
 */
import { shellQuote } from '../ports/index.js';
import * as path from 'node:path';
import type { CommandContext } from '../core/context.js';
import { VERSION } from '../core/version.js';
import { featuresFor, renderServerSettings, renderStandbySettings } from '../pg/version.js';
import { cidrOf, slotOf, type Rendered } from './common.js';

export interface RenderOptions {
  readonly role: 'primary' | 'standby';
  /** For a standby: where the primary is. */
  readonly primary?: { readonly host: string; readonly port: number };
}

export interface RenderedAll extends Rendered {
  readonly settingsLines: readonly string[];
  readonly standbyFile?: { readonly name: string; readonly content: string };
}

/** Renders recipe override, chef-ha.conf and the pg_hba block for this node in this role. */
export function renderManagedFiles(ctx: CommandContext, options: RenderOptions): RenderedAll {
  const config = ctx.config;
  const settingsLines = renderServerSettings({
    version: config.postgres.version,
    nodeName: config.node.name,
    listenAddresses: config.node.address.startsWith('127.')
      ? config.node.address
      : `localhost,${config.node.address}`,
    walKeepMb: config.replication.walKeepMb,
  });
  let lines = [...settingsLines];
  let standbyFile: RenderedAll['standbyFile'];
  if (options.role === 'standby' && options.primary) {
    const standby = renderStandbySettings({
      version: config.postgres.version,
      primaryHost: options.primary.host,
      primaryPort: options.primary.port,
      user: config.replication.user,
      passfile: config.postgres.passfile,
      applicationName: slotOf(config.node.name),
      slotName: slotOf(config.node.name),
    });
    lines = [...lines, ...standby.confLines];
    standbyFile = standby.dataDirFile;
  }
  const t = ctx.ports.templates;
  return {
    settingsLines,
    ...(standbyFile ? { standbyFile } : {}),
    chefHaConf: t.render('templates/chef-ha.conf.hbs', {
      chefHaVersion: VERSION,
      nodeName: config.node.name,
      role: options.role,
      pgVersion: config.postgres.version,
      mode: config.replication.mode,
      lines,
    }),
    hbaBlock: t.render('templates/pg_hba-block.hbs', {
      peerName: config.peer.name,
      user: config.replication.user,
      peerCidr: cidrOf(config.peer.address),
      method: featuresFor(config.postgres.version).passwordEncryption,
      chefDatabase: config.chefServer.database,
      chefUsers: `${config.chefServer.sqlUser},${config.chefServer.sqlRoUser}`,
      chefCidr: cidrOf(config.postgres.host ?? '127.0.0.1'),
      londiste: config.replication.mode === 'londiste',
      selfCidr: cidrOf(config.node.address),
    }),
    guardDropIn: t.render('templates/postgresql-guard.conf.hbs', {
      chefHaVersion: VERSION,
      pgVersion: config.postgres.version,
      cluster: config.postgres.cluster,
      // The package's command (DESIGN.md section 9: /opt/chef-ha/bin/chef-ha-ctl) and this run's config.
      ctl: shellQuote(ctx.ports.proc.selfCommand),
      configPath: path.resolve(ctx.options.configPath),
    }),
    recipeOverride: t.render('recipes-overrides/postgresql.rb', {
      chefHaVersion: VERSION,
      pgVersion: config.postgres.version,
      bindir: config.postgres.bindir,
      socketDir: config.postgres.socketDir,
      osUser: config.postgres.osUser,
      port: config.postgres.port,
      mode: config.replication.mode,
    }),
  };
}
