/**
 * Builds one sandbox node ("host"): the Debian PostgreSQL 15 "main" cluster (real, EMPTY, as after
 * `apt-get install postgresql-15`), the STAND-IN chef-server 11.1.7 omnibus tree, its sshd, and its
 * chef-ha.json. Every path is re-rooted under the node root (see paths.ts).
 */
import {
  copyFile,
  chmod,
  chown,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  FIXTURES_DIR,
  PG_BINDIR,
  REPO_ROOT,
  STANDINS_DIR,
  TSX_IMPORT,
  nodePaths,
  type NodePaths,
} from './paths.js';
import { inNetns } from './netns.js';
import { run, runAs, runOk, spawnDetached, tcpOpen, userIds, waitFor } from './proc.js';
import { sha256File } from './standins/reconfigure.js';
import { EMBEDDED_OS_USER, EMBEDDED_SUPERUSER } from './standins/runit.js';
import type { SandboxNode, UpOptions } from './types.js';

export interface NodePlan {
  readonly name: string;
  readonly index: number;
  readonly address: string;
  /** the node's network namespace (netns mode), null on loopback */
  readonly netns: string | null;
  readonly ports: {
    postgres: number;
    embeddedPostgres: number;
    chefApi: number;
    health: number;
    ssh: number;
  };
}

async function mkdirOwned(path: string, mode: number, uid = 0, gid = 0): Promise<void> {
  await mkdir(path, { recursive: true });
  await chown(path, uid, gid);
  await chmod(path, mode);
}

async function writeOwned(path: string, content: string, mode: number, uid = 0, gid = 0): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content, { mode });
  await chown(path, uid, gid);
  await chmod(path, mode);
}

/** Replaces (or appends) a `key = value` line of a postgresql.conf, Debian-style. */
function setConf(text: string, key: string, value: string, comment: string): string {
  const re = new RegExp(`^#?${key} = .*$`, 'm');
  const line = `${key} = ${value}\t\t\t# ${comment}`;
  return re.test(text) ? text.replace(re, line) : `${text}\n${line}\n`;
}

const DEBIAN_HBA = `# PostgreSQL Client Authentication Configuration File
# ===================================================
#
# (chef-ha sandbox: Debian 12 postgresql-common's default pg_hba.conf for a new cluster)
#
# Refer to the "Client Authentication" section in the PostgreSQL
# documentation for a complete description of this file.

# DO NOT DISABLE!
# If you change this first entry you will need to make sure that the
# database superuser can access the database using some other method.
# Noninteractive access to all databases is required during automatic
# maintenance (custom daily cronjobs, replication, and similar tasks).
#
# Database administrative login by Unix domain socket
local   all             postgres                                peer

# TYPE  DATABASE        USER            ADDRESS                 METHOD

# "local" is for Unix domain socket connections only
local   all             all                                     peer
# IPv4 local connections:
host    all             all             127.0.0.1/32            scram-sha-256
# IPv6 local connections:
host    all             all             ::1/128                 scram-sha-256
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
`;

const DEBIAN_IDENT = `# PostgreSQL User Name Maps
# =========================
#
# (chef-ha sandbox: Debian 12's default pg_ident.conf)
#
# Refer to the PostgreSQL documentation, chapter "Client
# Authentication" for a complete description.

# MAPNAME       SYSTEM-USERNAME         PG-USERNAME
`;

/** Debian "main" cluster: initdb, move the config to <root>/etc/postgresql/15/main, start with pg_ctl. */
async function buildDistributionPostgres(p: NodePaths, plan: NodePlan): Promise<void> {
  const pg = await userIds('postgres');
  await mkdirOwned(join(p.root, 'var', 'lib'), 0o755);
  await mkdirOwned(p.pgHome, 0o755, pg.uid, pg.gid);
  await mkdirOwned(join(p.pgHome, '15'), 0o755, pg.uid, pg.gid);
  await mkdirOwned(p.pgDataDir, 0o700, pg.uid, pg.gid);
  await mkdirOwned(join(p.root, 'etc', 'postgresql'), 0o755, pg.uid, pg.gid);
  await mkdirOwned(join(p.root, 'etc', 'postgresql', '15'), 0o755, pg.uid, pg.gid);
  await mkdirOwned(p.pgConfDir, 0o755, pg.uid, pg.gid);
  await mkdirOwned(join(p.pgConfDir, 'conf.d'), 0o755, pg.uid, pg.gid);
  await mkdirOwned(join(p.root, 'run'), 0o755);
  await mkdirOwned(p.pgSocketDir, 0o2775, pg.uid, pg.gid);
  await mkdirOwned(join(p.root, 'var', 'log'), 0o755);
  await mkdirOwned(dirname(p.pgLogFile), 0o1775, 0, pg.gid);

  const init = await runAs(
    'postgres',
    [
      join(PG_BINDIR, 'initdb'),
      '-D',
      p.pgDataDir,
      '--auth-local',
      'peer',
      '--auth-host',
      'scram-sha-256',
      '-E',
      'UTF8',
      '--locale',
      'C.UTF-8',
      '--no-instructions',
    ],
    { cwd: '/' },
  );
  if (init.code !== 0) {
    throw new Error(`initdb of ${p.pgDataDir} failed: ${init.stderr.trim()}`);
  }
  let conf = await readFile(join(p.pgDataDir, 'postgresql.conf'), 'utf8');
  conf =
    `# -----------------------------\n# PostgreSQL configuration file\n# -----------------------------\n` +
    `# (chef-ha sandbox: initdb's sample with the edits Debian's pg_createcluster makes, re-rooted under\n#  ${p.root})\n\n` +
    conf;
  const edits: [string, string, string][] = [
    ['data_directory', `'${p.pgDataDir}'`, 'use data in another directory'],
    ['hba_file', `'${join(p.pgConfDir, 'pg_hba.conf')}'`, 'host-based authentication file'],
    ['ident_file', `'${join(p.pgConfDir, 'pg_ident.conf')}'`, 'ident configuration file'],
    ['external_pid_file', `'${join(p.pgSocketDir, '15-main.pid')}'`, 'write an extra PID file'],
    [
      'listen_addresses',
      plan.netns === null ? `'${plan.address}'` : `'localhost,${plan.address}'`,
      'what IP address(es) to listen on;',
    ],
    ['port', String(plan.ports.postgres), '(change requires restart)'],
    ['unix_socket_directories', `'${p.pgSocketDir}'`, 'comma-separated list of directories'],
    ['password_encryption', 'scram-sha-256', 'scram-sha-256 or md5'],
    ['cluster_name', "'15/main'", 'added to process titles if nonempty'],
    ['log_line_prefix', "'%m [%p] %q%u@%d '", 'special values:'],
    ['include_dir', "'conf.d'", "include files ending in '.conf' from"],
  ];
  for (const [k, v, c] of edits) {
    conf = setConf(conf, k, v, c);
  }
  await writeOwned(join(p.pgConfDir, 'postgresql.conf'), conf, 0o644, pg.uid, pg.gid);
  await writeOwned(join(p.pgConfDir, 'pg_hba.conf'), DEBIAN_HBA, 0o640, pg.uid, pg.gid);
  await writeOwned(join(p.pgConfDir, 'pg_ident.conf'), DEBIAN_IDENT, 0o640, pg.uid, pg.gid);
  await writeOwned(join(p.pgConfDir, 'start.conf'), 'auto\n', 0o644, pg.uid, pg.gid);
  await writeOwned(join(p.pgConfDir, 'pg_ctl.conf'), "pg_ctl_options = ''\n", 0o644, pg.uid, pg.gid);
  await writeOwned(
    join(p.pgConfDir, 'environment'),
    '# environment variables for the postgres process\n',
    0o644,
    pg.uid,
    pg.gid,
  );
  for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
    await rm(join(p.pgDataDir, f), { force: true });
  }
  // in netns mode the postmaster starts inside the node's namespace (ip netns exec, then runuser)
  const start = await run(
    inNetns(plan.netns, [
      'runuser',
      '-u',
      'postgres',
      '--',
      join(PG_BINDIR, 'pg_ctl'),
      '-D',
      p.pgDataDir,
      '-o',
      `-c config_file=${join(p.pgConfDir, 'postgresql.conf')}`,
      '-l',
      p.pgLogFile,
      '-w',
      '-t',
      '60',
      'start',
    ]),
    { cwd: '/' },
  );
  if (start.code !== 0) {
    throw new Error(
      `pg_ctl start of ${p.pgDataDir} failed: ${(start.stderr || start.stdout).trim()}; see ${p.pgLogFile}`,
    );
  }
}

let ctlBundle: Promise<string | null> | undefined;

/**
 * Bundles the chef-server-ctl stand-in into one ES module under node_modules/.cache (packages stay
 * external, so they resolve from the repository's node_modules), once per process. Returns null when
 * esbuild (a dependency of tsx) is not there: the wrapper then runs the TypeScript through tsx.
 */
export function bundleCtl(): Promise<string | null> {
  ctlBundle ??= (async () => {
    const esbuild = join(REPO_ROOT, 'node_modules', '.bin', 'esbuild');
    const out = join(REPO_ROOT, 'node_modules', '.cache', 'chef-ha-sandbox', 'chef-server-ctl.mjs');
    const tmp = `${out}.${process.pid}.tmp`;
    await mkdir(dirname(out), { recursive: true });
    const r = await run([
      esbuild,
      join(STANDINS_DIR, 'chef-server-ctl.ts'),
      '--bundle',
      '--platform=node',
      '--format=esm',
      '--packages=external',
      '--log-level=error',
      `--outfile=${tmp}`,
    ]).catch(() => ({ code: 1, stdout: '', stderr: 'esbuild not found' }));
    if (r.code !== 0) {
      await rm(tmp, { force: true });
      return null;
    }
    await rename(tmp, out);
    return out;
  })();
  return ctlBundle;
}

/** The stand-in chef-server 11.1.7 omnibus tree and /etc/chef-server/chef-server.rb. */
async function buildOmnibus(p: NodePaths, plan: NodePlan, sandboxDir: string): Promise<void> {
  const cb = p.cookbooksDir;
  await mkdir(join(cb, 'chef-server', 'recipes'), { recursive: true });
  await mkdir(join(cb, 'chef-server', 'attributes'), { recursive: true });
  await mkdir(join(cb, 'cache'), { recursive: true });
  await writeFile(
    join(cb, 'solo.rb'),
    'CURRENT_PATH = File.expand_path(File.dirname(__FILE__))\nfile_cache_path "#{CURRENT_PATH}/cache"\ncookbook_path CURRENT_PATH\nverbose_logging false\n',
  );
  await writeFile(join(cb, 'dna.json'), '{"run_list": ["recipe[chef-server]"]}\n');
  await writeFile(join(cb, 'show-config.json'), '{"run_list": ["recipe[chef-server::show_config]"]}\n');
  await writeFile(
    join(cb, 'pre_upgrade_setup.json'),
    '{"run_list": ["recipe[chef-server::pre_11.1_upgrade_setup]"]}\n',
  );
  await copyFile(join(FIXTURES_DIR, 'postgresql.rb'), p.recipeFile);
  await copyFile(join(FIXTURES_DIR, 'default.rb'), join(cb, 'chef-server', 'recipes', 'default.rb'));
  await copyFile(
    join(FIXTURES_DIR, 'postgresql_disable.rb'),
    join(cb, 'chef-server', 'recipes', 'postgresql_disable.rb'),
  );
  await copyFile(
    join(FIXTURES_DIR, 'attributes-default.rb'),
    join(cb, 'chef-server', 'attributes', 'default.rb'),
  );
  // templates and the helper library the recipe uses (fixtures; the chef-solo stand-in reads them)
  for (const sub of ['templates', 'libraries'] as const) {
    const to = join(cb, 'chef-server', sub, ...(sub === 'templates' ? ['default'] : []));
    await mkdir(to, { recursive: true });
    for (const f of await readdir(join(FIXTURES_DIR, sub))) {
      await copyFile(join(FIXTURES_DIR, sub, f), join(to, f));
    }
  }
  await writeFile(
    join(cb, 'chef-server', 'metadata.rb'),
    'name "chef-server"\nmaintainer "Opscode, Inc."\nlicense "Apache 2.0"\ndescription "Installs and configures Chef Server from Omnibus"\nversion "0.1.0"\n\ndepends "runit"\n',
  );

  // embedded/bin: stand-in for the embedded PostgreSQL 9.2 build = links to Debian's PostgreSQL 15
  await mkdir(p.embeddedBin, { recursive: true });
  for (const tool of [
    'postgres',
    'initdb',
    'psql',
    'createdb',
    'createuser',
    'dropdb',
    'pg_ctl',
    'pg_dump',
    'pg_dumpall',
    'pg_restore',
  ]) {
    const link = join(p.embeddedBin, tool);
    await rm(link, { force: true });
    await symlink(join(PG_BINDIR, tool), link);
  }
  await writeFile(
    join(p.embeddedBin, 'README.stand-in'),
    'chef-ha sandbox STAND-IN: the embedded PostgreSQL 9.2 of chef-server 11.1.7 is replaced by links to\n' +
      `Debian's PostgreSQL 15 (${PG_BINDIR}). Its compiled-in socket directory /tmp is ${p.embeddedSocketDir} here.\n`,
  );
  await writeFile(
    join(p.embeddedBin, 'chpst'),
    `#!/bin/bash
# chef-ha sandbox STAND-IN of runit's chpst: only -u user[:group] (run as user), -U and -P are accepted.
# The ${EMBEDDED_SUPERUSER} account does not exist in the sandbox; ${EMBEDDED_OS_USER} plays it.
user=""
while [ $# -gt 0 ]; do
  case "$1" in
    -u) user="\${2%%:*}"; shift 2 ;;
    -U) shift 2 ;;
    -P) shift ;;
    *) break ;;
  esac
done
# libpq's default role is the OS account's name: keep it ${EMBEDDED_SUPERUSER} for the account that plays it
if [ "$user" = "${EMBEDDED_SUPERUSER}" ]; then user="${EMBEDDED_OS_USER}"; export PGUSER="${EMBEDDED_SUPERUSER}"; fi
if [ -n "$user" ] && [ "$user" != "root" ]; then exec runuser -u "$user" -- "$@"; fi
exec "$@"
`,
    { mode: 0o755 },
  );
  await writeFile(
    join(p.embeddedBin, 'sv'),
    `#!/bin/bash
# chef-ha sandbox STAND-IN of runit's sv. As /opt/chef-server/init/<svc> (LSB mode): "<svc> <cmd>";
# as sv: "sv <cmd> <service dir>". Both delegate to the chef-server-ctl stand-in.
name="$(basename "$0")"
if [ "$name" = "sv" ]; then cmd="$1"; svc="$(basename "$2")"; else cmd="$1"; svc="$name"; fi
case "$cmd" in interrupt) cmd=int ;; up) cmd=start ;; down) cmd=stop ;; esac
exec ${p.ctl} "$cmd" "$svc"
`,
    { mode: 0o755 },
  );
  // stand-in of the embedded sqitch (test/sandbox/standins/sqitch.rb)
  await copyFile(join(STANDINS_DIR, 'sqitch.rb'), join(p.embeddedBin, 'sqitch'));
  await chmod(join(p.embeddedBin, 'sqitch'), 0o755);
  const schemaDir = join(p.omnibusDir, 'embedded', 'service', 'chef-server-schema');
  await mkdir(join(schemaDir, 'deploy'), { recursive: true });
  await writeFile(
    join(schemaDir, 'sqitch.conf'),
    '[core]\n\tengine = pg\n[core "pg"]\n\tdb_name = opscode_chef\n',
  );
  await copyFile(join(FIXTURES_DIR, 'schema.sql'), join(schemaDir, 'deploy', 'schema.stand-in.sql'));
  await mkdir(join(p.omnibusDir, 'embedded', 'service', 'erchef', 'bin'), { recursive: true });
  await mkdir(join(p.omnibusDir, 'embedded', 'service', 'erchef', 'lib'), { recursive: true });
  await writeFile(
    join(p.omnibusDir, 'version-manifest.txt'),
    'chef-server 11.1.7\n\nComponent                 Installed Version   Version GUID\n' +
      '-----------------------------------------------------------------\n' +
      'erchef                    1.4.1               git:569b56a4 (stand-in: test/sandbox/standins/chef-api.ts)\n' +
      'postgresql                9.2.10              (stand-in: PostgreSQL 15 binaries)\n' +
      'omnibus-ctl               0.0.7               git:0dae72b0 (stand-in: test/sandbox/standins/chef-server-ctl.ts)\n' +
      'chef-server-cookbooks     11.1.7              (stand-in fixture recipes)\n',
  );
  for (const d of [p.svDir, p.serviceDir, p.initDir, join(p.omnibusDir, 'bin')]) {
    await mkdir(d, { recursive: true });
  }
  const bundle = await bundleCtl();
  await writeFile(
    p.ctl,
    `#!/bin/bash
#
# chef-ha sandbox STAND-IN of /opt/chef-server/bin/chef-server-ctl (omnibus-ctl wrapper).
# Runs test/sandbox/standins/chef-server-ctl.ts for the node rooted at ${p.root}.
#
unset RUBYOPT BUNDLE_BIN_PATH BUNDLE_GEMFILE GEM_PATH GEM_HOME
${
  plan.netns === null
    ? ''
    : `# netns mode: this host's tools run in its network namespace, whoever calls them (the services they
# start, erchef and the embedded PostgreSQL, then live there too)
if [ "$(stat -L -c %i /proc/self/ns/net)" != "$(stat -L -c %i /run/netns/${plan.netns} 2>/dev/null)" ]; then
  exec ip netns exec ${plan.netns} "$0" "$@"
fi
`
}export CHEF_STANDIN_ROOT='${p.root}'
export CHEF_STANDIN_SANDBOX='${sandboxDir}'
${
  bundle === null
    ? `exec '${process.execPath}' --import '${TSX_IMPORT}' '${join(STANDINS_DIR, 'chef-server-ctl.ts')}' "$@"`
    : `# (from ${bundle}, an esbuild bundle of it made by \`up\`: plain node starts it in a third of tsx's time,
# which matters because the chef-solo stand-in calls chef-server-ctl status postgresql several times)
exec '${process.execPath}' '${bundle}' "$@"`
}
`,
    { mode: 0o755 },
  );
  await mkdirOwned(join(p.root, 'etc'), 0o755);
  await mkdirOwned(p.etcDir, 0o775);
  await writeFile(
    p.chefServerRb,
    `# /etc/chef-server/chef-server.rb of sandbox node ${plan.name} (no settings: the defaults apply)
`,
    { mode: 0o644 },
  );
  await writeFile(
    p.hostRb,
    `# Sandbox stand-in host settings of node ${plan.name}, read before /etc/chef-server/chef-server.rb.
# Several stand-in Chef Servers share one machine, so each embedded PostgreSQL and each erchef needs its
# own address and port; on real hosts these are the same defaults on both servers.
postgresql['listen_address'] = '${plan.netns === null ? plan.address : '127.0.0.1'}'
postgresql['vip'] = '${plan.netns === null ? plan.address : '127.0.0.1'}'
postgresql['port'] = ${plan.ports.embeddedPostgres}
erchef['listen'] = '${plan.address}'
erchef['port'] = ${plan.ports.chefApi}
`,
    { mode: 0o644 },
  );
  await mkdirOwned(p.embeddedSocketDir, 0o1777);
  // this stand-in host's sysctl: the 11.1.7 recipe appends its shm settings to /etc/sysctl.conf and
  // runs /sbin/sysctl -p (both re-rooted by the chef-solo stand-in); the kernel is never touched
  await writeFile(
    join(p.root, 'etc', 'sysctl.conf'),
    '#\n# /etc/sysctl.conf - Configuration file for setting system variables\n# (chef-ha sandbox stand-in host)\n#\n',
  );
  await mkdirOwned(join(p.root, 'sbin'), 0o755);
  await writeFile(
    join(p.root, 'sbin', 'sysctl'),
    `#!/bin/bash
# chef-ha sandbox STAND-IN of /sbin/sysctl for this node: 'sysctl -p FILE' prints the settings of FILE
# as sysctl does, WITHOUT applying them (several stand-in hosts share one real kernel).
[ "$1" = "-p" ] || { echo "sysctl stand-in: only -p FILE is reproduced" >&2; exit 1; }
file="\${2:-${join(p.root, 'etc', 'sysctl.conf')}}"
grep -E '^[[:space:]]*[a-z0-9_.]+[[:space:]]*=' "$file" | sed -E 's/[[:space:]]*=[[:space:]]*/ = /'
`,
    { mode: 0o755 },
  );
  await mkdir(p.dataDir, { recursive: true });
  await mkdir(p.logDir, { recursive: true });
}

/** A real sshd for the node on its own port, with its own host key; root's keys under <root>/root/.ssh. */
async function buildSshd(p: NodePaths, plan: NodePlan, clientKey: string): Promise<void> {
  await mkdirOwned(p.sshDir, 0o755);
  await mkdirOwned(join(p.root, 'root'), 0o700);
  await mkdirOwned(p.rootSshDir, 0o700);
  await rm(p.sshHostKey, { force: true });
  await rm(`${p.sshHostKey}.pub`, { force: true });
  await runOk(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `root@${plan.name}`, '-f', p.sshHostKey]);
  await copyFile(clientKey, p.identityFile);
  await chmod(p.identityFile, 0o600);
  await copyFile(`${clientKey}.pub`, `${p.identityFile}.pub`);
  await copyFile(`${clientKey}.pub`, p.authorizedKeys);
  await chmod(p.authorizedKeys, 0o600);
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  await writeFile(
    p.sshdConfig,
    `# sshd of sandbox node ${plan.name} (a real OpenSSH sshd; paths re-rooted under the node root)
Port ${plan.ports.ssh}
ListenAddress ${plan.address}
HostKey ${p.sshHostKey}
PidFile ${p.sshdPidFile}
AuthorizedKeysFile ${p.authorizedKeys}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
MaxStartups 50:30:100
Subsystem sftp internal-sftp
`,
  );
  const check = await run(['/usr/sbin/sshd', '-t', '-f', p.sshdConfig]);
  if (check.code !== 0) {
    throw new Error(`sshd -t -f ${p.sshdConfig}: ${check.stderr.trim()}`);
  }
  await mkdir(dirname(p.sshdLog), { recursive: true });
  // `ip netns exec` execs sshd in place: the pid in the PidFile is the daemon's
  spawnDetached(inNetns(plan.netns, ['/usr/sbin/sshd', '-D', '-e', '-f', p.sshdConfig]), {
    logFile: p.sshdLog,
    cwd: '/',
  });
  if (!(await waitFor(() => tcpOpen(plan.address, plan.ports.ssh), 10_000))) {
    throw new Error(
      `sshd of ${plan.name} did not listen on ${plan.address}:${plan.ports.ssh}; see ${p.sshdLog}`,
    );
  }
}

/** Builds everything of one node up to (not including) the first reconfigure. */
export async function buildNode(sandboxDir: string, plan: NodePlan, clientKey: string): Promise<NodePaths> {
  const p = nodePaths(join(sandboxDir, 'nodes', plan.name));
  await mkdirOwned(p.root, 0o755);
  await buildDistributionPostgres(p, plan);
  await buildOmnibus(p, plan, sandboxDir);
  await buildSshd(p, plan, clientKey);
  return p;
}

/** known_hosts of `p` holding the peer's host key for [address]:port. */
export async function writeKnownHosts(p: NodePaths, peer: NodePaths, peerPlan: NodePlan): Promise<void> {
  const pub = (await readFile(`${peer.sshHostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  await writeFile(p.knownHosts, `[${peerPlan.address}]:${peerPlan.ports.ssh} ${pub}\n`, { mode: 0o644 });
}

/** The node's chef-ha.json (must pass parseConfig of src/core/config.ts). */
export async function writeChefHaConfig(
  p: NodePaths,
  plan: NodePlan,
  peerPaths: NodePaths,
  peerPlan: NodePlan,
  opts: Required<Pick<UpOptions, 'mode' | 'sync'>>,
  /** the `haproxy` section when the sandbox has a proxy host (proxy.ts haproxySection) */
  haproxy: Record<string, unknown> | null = null,
): Promise<void> {
  const config = {
    node: { name: plan.name, address: plan.address },
    peer: {
      name: peerPlan.name,
      address: peerPlan.address,
      postgresPort: peerPlan.ports.postgres,
      healthPort: peerPlan.ports.health,
      ssh: {
        target: `root@${peerPlan.address}`,
        port: peerPlan.ports.ssh,
        identityFile: p.identityFile,
        knownHostsFile: p.knownHosts,
        ctl: [process.execPath, join(REPO_ROOT, 'dist', 'cli.js'), '--config', peerPaths.chefHaConfig],
      },
    },
    replication: { mode: opts.mode, synchronous: opts.sync },
    postgres: {
      version: '15',
      port: plan.ports.postgres,
      bindir: PG_BINDIR,
      dataDir: p.pgDataDir,
      confDir: p.pgConfDir,
      socketDir: p.pgSocketDir,
      osUser: 'postgres',
      superuser: 'postgres',
      manager: 'pg_ctl',
      logFile: p.pgLogFile,
      passfile: p.pgPassfile,
      // No systemd here: chef-ha runs the pre-start guard itself before each start, as the drop-in would.
      preStartHook: [
        process.execPath,
        join(REPO_ROOT, 'dist', 'cli.js'),
        '--config',
        p.chefHaConfig,
        'guard',
      ],
    },
    chefServer: {
      ctl: p.ctl,
      etcDir: p.etcDir,
      omnibusDir: p.omnibusDir,
      dataDir: p.dataDir,
      originalRecipeSha256: [await sha256File(join(FIXTURES_DIR, 'postgresql.rb'))],
      embeddedPostgres: {
        bindir: p.embeddedBin,
        dataDir: p.embeddedDataDir,
        socketDir: p.embeddedSocketDir,
        port: plan.ports.embeddedPostgres,
        osUser: EMBEDDED_OS_USER,
        superuser: EMBEDDED_SUPERUSER,
      },
    },
    health: { listen: plan.address, port: plan.ports.health },
    // Londiste daemons' files under the stand-in host's postgres home; the sandbox host's systemd is
    // not this node's, so Debian's pgqd.service is left alone.
    londiste: { dir: join(p.pgHome, 'chef-ha-londiste'), disableSystemPgqd: false },
    ...(haproxy === null ? {} : { haproxy }),
    stateDir: p.chefHaStateDir,
  };
  await mkdirOwned(dirname(p.chefHaConfig), 0o755);
  await writeFile(p.chefHaConfig, JSON.stringify(config, null, 2) + '\n', { mode: 0o644 });
}

/** Describes a node for sandbox.json. */
export function describeNode(p: NodePaths, plan: NodePlan): SandboxNode {
  return {
    name: plan.name,
    address: plan.address,
    root: p.root,
    config: p.chefHaConfig,
    ctl: p.ctl,
    chefApi: `http://${plan.address}:${plan.ports.chefApi}`,
    postgres: {
      host: plan.address,
      port: plan.ports.postgres,
      socketDir: p.pgSocketDir,
      dataDir: p.pgDataDir,
      confDir: p.pgConfDir,
      bindir: PG_BINDIR,
      logFile: p.pgLogFile,
    },
    embeddedPostgres: {
      // in netns mode the embedded cluster listens on 127.0.0.1 inside the node's namespace
      host: plan.netns === null ? plan.address : '127.0.0.1',
      port: plan.ports.embeddedPostgres,
      socketDir: p.embeddedSocketDir,
      dataDir: p.embeddedDataDir,
      superuser: EMBEDDED_SUPERUSER,
    },
    healthPort: plan.ports.health,
    sshPort: plan.ports.ssh,
    netns: plan.netns,
  };
}
