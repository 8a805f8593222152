/**
 * Paths of one sandbox node. A node's root directory stands in for that host's `/`: the Chef Server 11
 * omnibus paths and Debian's PostgreSQL paths are re-rooted under it, so every stand-in and every
 * chef-ha.json points at `<root>/opt/chef-server`, `<root>/etc/postgresql/15/main`, and so on.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The repository this file belongs to: the nearest directory above it that holds package.json and
 * test/sandbox/ (this file may also run from a bundle under node_modules/.cache, see build.ts).
 */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'sandbox', 'paths.ts'))) {
      return dir;
    }
    if (dirname(dir) === dir) {
      return resolve(from, '..', '..');
    }
  }
}

/** `--import` value that makes plain `node` run TypeScript, independent of the current directory. */
export const TSX_IMPORT = pathToFileURL(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export const FIXTURES_DIR = join(REPO_ROOT, 'test', 'sandbox', 'fixtures');
export const STANDINS_DIR = join(REPO_ROOT, 'test', 'sandbox', 'standins');

/** Debian's PostgreSQL 15 server binaries (the real thing, used for both clusters). */
export const PG_BINDIR = '/usr/lib/postgresql/15/bin';

/** Sorted runit service names of Chef Server 11 (identical in 11.0.8 and 11.1.7). */
export const CHEF_SERVICES = [
  'bookshelf',
  'chef-expander',
  'chef-server-webui',
  'chef-solr',
  'erchef',
  'nginx',
  'postgresql',
  'rabbitmq',
] as const;
export type ChefService = (typeof CHEF_SERVICES)[number];

export interface NodePaths {
  readonly root: string;
  // Chef Server 11 omnibus layout
  readonly omnibusDir: string;
  readonly embeddedBin: string;
  readonly cookbooksDir: string;
  readonly recipeFile: string;
  readonly ctl: string;
  readonly svDir: string;
  readonly serviceDir: string;
  readonly initDir: string;
  readonly etcDir: string;
  readonly chefServerRb: string;
  /** Sandbox-only: this stand-in host's own ports (read before chef-server.rb). */
  readonly hostRb: string;
  readonly secretsFile: string;
  readonly runningJson: string;
  readonly dataDir: string;
  readonly bootstrappedFile: string;
  readonly logDir: string;
  readonly ctlCallsLog: string;
  readonly embeddedPgDir: string;
  readonly embeddedDataDir: string;
  readonly embeddedLogDir: string;
  readonly embeddedSocketDir: string;
  readonly erchefDir: string;
  readonly erchefConfig: string;
  readonly erchefLogDir: string;
  readonly reindexFile: string;
  // Debian PostgreSQL 15 layout ("main" cluster)
  readonly pgDataDir: string;
  readonly pgConfDir: string;
  readonly pgSocketDir: string;
  readonly pgLogFile: string;
  readonly pgHome: string;
  readonly pgPassfile: string;
  // chef-ha
  readonly chefHaConfig: string;
  readonly chefHaStateDir: string;
  // sshd of this "host"
  readonly sshDir: string;
  readonly sshdConfig: string;
  readonly sshdPidFile: string;
  readonly sshdLog: string;
  readonly sshHostKey: string;
  readonly rootSshDir: string;
  readonly authorizedKeys: string;
  readonly identityFile: string;
  readonly knownHosts: string;
}

/** Every path of the node whose fake root filesystem is `root`. */
export function nodePaths(root: string): NodePaths {
  const omnibusDir = join(root, 'opt', 'chef-server');
  const etcDir = join(root, 'etc', 'chef-server');
  const dataDir = join(root, 'var', 'opt', 'chef-server');
  const logDir = join(root, 'var', 'log', 'chef-server');
  const rootSshDir = join(root, 'root', '.ssh');
  return {
    root,
    omnibusDir,
    embeddedBin: join(omnibusDir, 'embedded', 'bin'),
    cookbooksDir: join(omnibusDir, 'embedded', 'cookbooks'),
    recipeFile: join(omnibusDir, 'embedded', 'cookbooks', 'chef-server', 'recipes', 'postgresql.rb'),
    ctl: join(omnibusDir, 'bin', 'chef-server-ctl'),
    svDir: join(omnibusDir, 'sv'),
    serviceDir: join(omnibusDir, 'service'),
    initDir: join(omnibusDir, 'init'),
    etcDir,
    chefServerRb: join(etcDir, 'chef-server.rb'),
    hostRb: join(root, 'etc', 'chef-standin-host.rb'),
    secretsFile: join(etcDir, 'chef-server-secrets.json'),
    runningJson: join(etcDir, 'chef-server-running.json'),
    dataDir,
    bootstrappedFile: join(dataDir, 'bootstrapped'),
    logDir,
    ctlCallsLog: join(logDir, 'ctl-calls.log'),
    embeddedPgDir: join(dataDir, 'postgresql'),
    embeddedDataDir: join(dataDir, 'postgresql', 'data'),
    embeddedLogDir: join(logDir, 'postgresql'),
    embeddedSocketDir: join(root, 'tmp'),
    erchefDir: join(dataDir, 'erchef'),
    erchefConfig: join(dataDir, 'erchef', 'etc', 'app.config'),
    erchefLogDir: join(logDir, 'erchef'),
    reindexFile: join(dataDir, 'erchef', 'reindex.json'),
    pgDataDir: join(root, 'var', 'lib', 'postgresql', '15', 'main'),
    pgConfDir: join(root, 'etc', 'postgresql', '15', 'main'),
    pgSocketDir: join(root, 'run', 'postgresql'),
    pgLogFile: join(root, 'var', 'log', 'postgresql', 'postgresql-15-main.log'),
    pgHome: join(root, 'var', 'lib', 'postgresql'),
    pgPassfile: join(root, 'var', 'lib', 'postgresql', '.chef-ha.pgpass'),
    chefHaConfig: join(root, 'etc', 'chef-ha', 'chef-ha.json'),
    chefHaStateDir: join(root, 'var', 'opt', 'chef-ha'),
    sshDir: join(root, 'etc', 'ssh'),
    sshdConfig: join(root, 'etc', 'ssh', 'sshd_config'),
    sshdPidFile: join(root, 'run', 'sshd.pid'),
    sshdLog: join(root, 'var', 'log', 'sshd.log'),
    sshHostKey: join(root, 'etc', 'ssh', 'ssh_host_ed25519_key'),
    rootSshDir,
    authorizedKeys: join(rootSshDir, 'authorized_keys'),
    identityFile: join(rootSshDir, 'id_ed25519'),
    knownHosts: join(rootSshDir, 'known_hosts'),
  };
}
