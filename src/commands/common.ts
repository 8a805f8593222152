/**
 * Pieces shared by the planners: desired texts of the files chef-ha manages, and the steps that several
 * commands use (recipe override, chef-server.rb block, PostgreSQL service verbs). Pure.
 */
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { Config } from '../core/config.js';
import { slotNameFor } from '../core/config.js';
import type { LocalFacts } from '../core/facts.js';
import type { Step } from '../core/plan.js';
import { RefusedError } from '../core/errors.js';
import { renderChefServerRbBlock, replaceMarkedBlock, RB_BEGIN, RB_END } from '../chef/chef-server-rb.js';
import {
  chefServerRbPath,
  chefHaConfPath,
  pgHbaPath,
  postgresqlConfPath,
  recipePath,
  guardDropInPath,
} from '../chef/paths.js';
import { renderServiceCommand, type ServiceVerb } from '../pg/manager.js';

export const HBA_BEGIN = '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)';
export const HBA_END = '# END chef-ha';
export const INCLUDE_LINE = "include_if_exists = 'conf.d/chef-ha.conf'\t# added by chef-ha-ctl";

/** Texts rendered through the templates port by the command adapter before planning. */
export interface Rendered {
  readonly recipeOverride: string;
  readonly chefHaConf: string;
  readonly hbaBlock: string;
  /** The systemd drop-in running the pre-start guard (pg_ctlcluster hosts with systemd). */
  readonly guardDropIn?: string;
}

/** Settings whose change needs a restart rather than a reload. */
export const RESTART_SETTINGS = [
  'wal_level',
  'max_wal_senders',
  'max_replication_slots',
  'wal_log_hints',
  'hot_standby',
  'listen_addresses',
] as const;

export function slotOf(name: string): string {
  return slotNameFor(name);
}

/** The refusals every setup shares: tools present, recipe recognised. */
export function refuseBrokenEnvironment(local: LocalFacts, config: Config): void {
  const missing = Object.entries(local.binaries)
    .filter(([, ok]) => !ok)
    .map(([bin]) => bin);
  if (missing.length > 0) {
    throw new RefusedError(
      `PostgreSQL ${config.postgres.version} binaries are missing from ${config.postgres.bindir}: ${missing.join(', ')}; nothing was changed`,
      undefined,
      `install them (apt-get install postgresql-${config.postgres.version}) or set postgres.bindir to where they are`,
    );
  }
  if (!local.ctlExecutable) {
    throw new RefusedError(
      `chef-server-ctl not found or not executable at ${config.chefServer.ctl}; nothing was changed`,
      undefined,
      'install the chef-server 11 package first, or set chefServer.ctl to its path',
    );
  }
  if (!local.osUserKnown) {
    throw new RefusedError(
      `the OS user "${config.postgres.osUser}" (postgres.osUser) does not exist; nothing was changed`,
      undefined,
      `install PostgreSQL from the distribution (it creates the user) or set postgres.osUser`,
    );
  }
  if (local.recipe.kind === 'missing') {
    throw new RefusedError(
      `the chef-server recipe ${local.recipe.path} does not exist; nothing was changed`,
      undefined,
      'install the chef-server 11 package, or set chefServer.omnibusDir to its root',
    );
  }
  if (local.recipe.kind === 'unknown') {
    throw new RefusedError(
      `${local.recipe.path} is neither a chef-server 11 original nor chef-ha's override (sha256 ${local.recipe.sha256 ?? '?'}); it may hold local edits that the override would lose, so nothing was changed`,
      undefined,
      `restore the package's recipe (reinstall chef-server), or if this recipe is your accepted original add its sha256 to chefServer.originalRecipeSha256`,
    );
  }
}

/** Keep the original recipe beside the override, record its sha256, install the override. */
export function planRecipeSteps(
  local: LocalFacts,
  config: Config,
  rendered: Rendered,
  backupDir: string,
): Step[] {
  const recipe = recipePath(config);
  const isOverride = local.recipe.kind === 'override';
  const current = isOverride && local.recipe.sha256 !== undefined;
  return [
    {
      kind: 'backup',
      id: 'keep-original-recipe',
      title: 'keep the original postgresql.rb beside it and in the backup folder',
      method: 'copy',
      from: recipe,
      to: path.join(backupDir, 'postgresql.rb.orig'),
      done: isOverride ? 'the installed recipe is already the override' : undefined,
    },
    {
      kind: 'backup',
      id: 'keep-original-recipe-beside',
      title: 'keep the original recipe as postgresql.rb.chef-ha-original',
      method: 'copy',
      from: recipe,
      to: `${recipe}.chef-ha-original`,
      done: isOverride ? 'the installed recipe is already the override' : undefined,
    },
    {
      kind: 'action',
      id: 'record-original-recipe',
      title: 'record the original recipe sha256 in the state directory',
      action: 'record-state',
      args: {
        path: path.join(config.stateDir, 'recipe-original.json'),
        data: { sha256: local.recipe.sha256, origin: local.recipe.origin, path: recipe },
      },
      done: isOverride ? 'recorded when the override was installed' : undefined,
    },
    {
      kind: 'write',
      id: 'install-recipe-override',
      title: 'install chef-ha recipe override (chef-server uses the distribution PostgreSQL)',
      path: recipe,
      content: rendered.recipeOverride,
      mode: 0o644,
      done:
        current && local.recipe.sha256 === sha256Of(rendered.recipeOverride)
          ? 'override is installed and current'
          : undefined,
    },
  ];
}

function sha256Of(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The chef-server.rb text with chef-ha's block for this node. */
export function desiredChefServerRb(current: string | undefined, config: Config): string {
  return replaceMarkedBlock(
    current,
    RB_BEGIN,
    RB_END,
    renderChefServerRbBlock({
      vip: config.postgres.host ?? '127.0.0.1',
      port: config.postgres.port,
      bindir: config.postgres.bindir,
      socketDir: config.postgres.socketDir,
      osUser: config.postgres.osUser,
      mode: config.replication.mode,
      version: config.postgres.version,
    }),
  );
}

export function planChefServerRbStep(current: string | undefined, config: Config): Step {
  const desired = desiredChefServerRb(current, config);
  return {
    kind: 'write',
    id: 'write-chef-server-rb',
    title: 'point chef-server at the distribution PostgreSQL (marked block in chef-server.rb)',
    path: chefServerRbPath(config),
    content: desired,
    mode: 0o644,
    done: desired === current ? 'chef-server.rb block is current' : undefined,
  };
}

/** A run step for a PostgreSQL service verb. */
export function serviceStep(
  config: Config,
  verb: ServiceVerb,
  id: string,
  title: string,
  done?: string,
  stopMode?: 'fast' | 'immediate',
): Step {
  const cmd = renderServiceCommand(config, verb, stopMode);
  const hook = config.postgres.preStartHook;
  const before =
    hook && (verb === 'start' || verb === 'restart')
      ? { argv: hook as unknown as readonly [string, ...string[]], timeoutMs: 60_000 }
      : undefined;
  return {
    kind: 'run',
    id,
    title,
    argv: cmd.argv,
    user: cmd.user,
    timeoutMs: cmd.timeoutMs,
    done,
    ...(before ? { before } : {}),
  };
}

/** The pg_hba.conf text with chef-ha's block at the top (first match wins). */
export function desiredHba(current: string | undefined, block: string): string {
  return replaceMarkedBlock(current, HBA_BEGIN, HBA_END, block.trimEnd(), true);
}

/** Steps writing chef-ha.conf, the include line where missing, and the pg_hba block. */
export function planConfigFileSteps(local: LocalFacts, config: Config, rendered: Rendered): Step[] {
  const steps: Step[] = [];
  const conf = local.files.postgresqlConf ?? '';
  const includes = /^\s*include_dir\s*=\s*'conf\.d'/m.test(conf) || conf.includes(INCLUDE_LINE);
  steps.push({
    kind: 'write',
    id: 'include-chef-ha-conf',
    title: "make postgresql.conf read conf.d/chef-ha.conf (Debian's include_dir does already)",
    path: postgresqlConfPath(config),
    content: `${conf}${conf.endsWith('\n') || conf === '' ? '' : '\n'}${INCLUDE_LINE}\n`,
    mode: 0o644,
    owner: config.postgres.osUser,
    done: includes ? 'postgresql.conf includes conf.d' : undefined,
  });
  steps.push({
    kind: 'write',
    id: 'write-chef-ha-conf',
    title: 'write chef-ha settings (conf.d/chef-ha.conf)',
    path: chefHaConfPath(config),
    content: rendered.chefHaConf,
    mode: 0o644,
    owner: config.postgres.osUser,
    done: local.files.chefHaConf === rendered.chefHaConf ? 'chef-ha.conf is current' : undefined,
  });
  const hba = desiredHba(local.files.pgHba, rendered.hbaBlock);
  steps.push({
    kind: 'write',
    id: 'write-pg-hba',
    title: 'admit only the peer for replication (marked block in pg_hba.conf)',
    path: pgHbaPath(config),
    content: hba,
    mode: 0o640,
    owner: config.postgres.osUser,
    done: hba === local.files.pgHba ? 'pg_hba.conf block is current' : undefined,
  });
  steps.push(...planGuardDropInSteps(local, config, rendered));
  return steps;
}

/**
 * The pre-start guard's systemd drop-in and the daemon-reload that makes systemd read it: only where
 * the cluster is started through pg_ctlcluster (which hands over to systemd) and systemd is there.
 */
export function planGuardDropInSteps(local: LocalFacts, config: Config, rendered: Rendered): Step[] {
  if (
    config.postgres.manager !== 'pg_ctlcluster' ||
    !local.systemdUnitDirExists ||
    rendered.guardDropIn === undefined
  ) {
    return [];
  }
  const current = local.files.guardDropIn === rendered.guardDropIn;
  return [
    {
      kind: 'write',
      id: 'install-guard-drop-in',
      title: `run the pre-start guard before postgresql@${config.postgres.version}-${config.postgres.cluster} starts (systemd drop-in)`,
      path: guardDropInPath(config),
      content: rendered.guardDropIn,
      mode: 0o644,
      done: current ? 'the drop-in is current' : undefined,
    },
    {
      kind: 'run',
      id: 'systemd-daemon-reload',
      title: 'make systemd read the drop-in',
      argv: ['systemctl', 'daemon-reload'],
      timeoutMs: 60_000,
      done: current ? 'the drop-in did not change' : undefined,
    },
  ];
}

/** Whether the running server needs a restart for chef-ha's settings (compared with desired values). */
export function needsRestart(local: LocalFacts, desired: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  for (const name of RESTART_SETTINGS) {
    const want = desired[name];
    const have = local.pg.settings[name];
    if (want === undefined) {
      continue;
    }
    if (!have || have.pendingRestart || normalise(have.setting) !== normalise(want)) {
      out.push(name);
    }
  }
  return out;
}

function normalise(v: string): string {
  const s = v.replace(/^'|'$/g, '').trim().toLowerCase();
  // 9.6 accepts hot_standby and archive but reports both as replica.
  if (s === 'hot_standby' || s === 'archive') {
    return 'replica';
  }
  return s === 'true' ? 'on' : s === 'false' ? 'off' : s;
}

/** Parses `name = value` lines of a rendered chef-ha.conf. */
export function parseConfLines(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines) {
    const m = /^\s*(\w+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m?.[1] && m[2] !== undefined) {
      out[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
    }
  }
  return out;
}

/** Sum of Chef objects beyond bootstrap rows. */
export function chefObjects(data: Readonly<Record<string, number>>): number {
  return Object.values(data).reduce((a, b) => a + b, 0);
}

/** The address as a pg_hba CIDR. */
export function cidrOf(address: string): string {
  if (address.includes('/')) {
    return address;
  }
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}
