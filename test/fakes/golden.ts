/**
 * The renderings test/golden holds: every template and managed file for PostgreSQL 9.2, 12 and 15, made
 * through the real templates port (handlebars over templates/ and recipes-overrides/) from a fixed view.
 * test/unit/golden.test.ts compares them with the files; scripts/update-golden.ts rewrites the files.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../src/core/config.js';
import { desiredChefServerRb } from '../../src/commands/common.js';
import { renderManagedFiles } from '../../src/commands/render.js';
import { renderHaproxy } from '../../src/commands/haproxy-config/index.js';
import type { Templates } from '../../src/ports/index.js';
import { createTemplates } from '../../src/ports/templates.js';
import { config, standbyConfig } from './config.js';
import { commandContext } from './context.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GOLDEN_DIR = path.join(REPO_ROOT, 'test', 'golden');
export const GOLDEN_VERSIONS = ['9.2', '12', '15'] as const;

/** The chef-ha version in headers: fixed, so that a release does not rewrite every golden file. */
export const GOLDEN_CHEF_HA_VERSION = '0.0.0-golden';

/** The real templates port, with the view's chefHaVersion pinned. */
export function goldenTemplates(): Templates {
  const real = createTemplates(REPO_ROOT);
  return {
    render(name, view) {
      return real.render(
        name,
        'chefHaVersion' in view ? { ...view, chefHaVersion: GOLDEN_CHEF_HA_VERSION } : view,
      );
    },
  };
}

function managedFiles(c: Config, role: 'primary' | 'standby'): ReturnType<typeof renderManagedFiles> {
  const { ctx } = commandContext({ config: c, templates: goldenTemplates() });
  return renderManagedFiles(
    ctx,
    role === 'primary' ? { role } : { role, primary: { host: c.peer.address, port: c.peer.postgresPort } },
  );
}

/**
 * Every golden rendering, by path relative to test/golden. db1 (10.0.0.1) is the primary, db2 (10.0.0.2)
 * the standby; everything else is the configuration's defaults for the version.
 */
export function renderGoldens(): Map<string, string> {
  const out = new Map<string, string>();
  for (const version of GOLDEN_VERSIONS) {
    const primaryConfig = config({ postgres: { version } });
    const standbyConf = standbyConfig({ postgres: { version } });
    const primary = managedFiles(primaryConfig, 'primary');
    const standby = managedFiles(standbyConf, 'standby');
    if (!standby.standbyFile) {
      throw new Error(`no standby file rendered for PostgreSQL ${version}`);
    }
    out.set(`${version}/chef-ha.primary.conf`, primary.chefHaConf);
    out.set(`${version}/chef-ha.standby.conf`, standby.chefHaConf);
    out.set(`${version}/${standby.standbyFile.name}`, standby.standbyFile.content);
    out.set(`${version}/pg_hba-block.primary.conf`, primary.hbaBlock);
    out.set(`${version}/pg_hba-block.standby.conf`, standby.hbaBlock);
    out.set(`${version}/postgresql.rb`, primary.recipeOverride);
    out.set(`${version}/chef-server.rb`, desiredChefServerRb(undefined, primaryConfig));
  }
  // HAProxy for the pair: defaults, and with the TCP runtime API failover fences through.
  const plain = renderHaproxy(commandContext({ config: config(), templates: goldenTemplates() }).ctx);
  const withApi = renderHaproxy(
    commandContext({
      config: standbyConfig({ haproxy: { runtimeApi: { address: '10.0.0.9:9999' }, readLagBytes: 1048576 } }),
      templates: goldenTemplates(),
    }).ctx,
  );
  out.set('haproxy/haproxy.cfg', plain.cfg);
  out.set('haproxy/haproxy.state', plain.state);
  out.set('haproxy/haproxy.runtime-api.cfg', withApi.cfg);
  return out;
}
