/** Where Chef Server 11 keeps what chef-ha touches, from the configured roots. */
import * as path from 'node:path';
import type { Config } from '../core/config.js';

export function recipePath(config: Config): string {
  return path.join(
    config.chefServer.omnibusDir,
    'embedded',
    'cookbooks',
    'chef-server',
    'recipes',
    'postgresql.rb',
  );
}

export function chefServerRbPath(config: Config): string {
  return path.join(config.chefServer.etcDir, 'chef-server.rb');
}

export function secretsJsonPath(config: Config): string {
  return path.join(config.chefServer.etcDir, 'chef-server-secrets.json');
}

export function chefHaConfPath(config: Config): string {
  return path.join(config.postgres.confDir, 'conf.d', 'chef-ha.conf');
}

export function pgHbaPath(config: Config): string {
  return path.join(config.postgres.confDir, 'pg_hba.conf');
}

export function postgresqlConfPath(config: Config): string {
  return path.join(config.postgres.confDir, 'postgresql.conf');
}

export function autoConfPath(config: Config): string {
  return path.join(config.postgres.dataDir, 'postgresql.auto.conf');
}

/** The systemd drop-in that runs the pre-start guard before the distribution cluster starts. */
export function guardDropInPath(config: Config): string {
  const pg = config.postgres;
  return path.join(
    pg.systemdUnitDir,
    `postgresql@${pg.version}-${pg.cluster}.service.d`,
    'chef-ha-guard.conf',
  );
}
