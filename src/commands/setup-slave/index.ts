/** setup-slave: fetch and verify the bundle → gather → plan → confirm → execute → report. */
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import type { CommandContext } from '../../core/context.js';
import { backupDirFor, withLock } from '../../core/context.js';
import { gatherPairFacts } from '../../core/facts.js';
import { executePlan } from '../../core/execute.js';
import { RefusedError, UsageError, describeError } from '../../core/errors.js';
import type { BundleManifest } from '../../chef/bundle.js';
import { checkManifest, sha256, verifySums } from '../../chef/bundle.js';
import { renderSshArgv } from '../../chef/ssh.js';
import { planSetupSlave, type SetupSlaveOptions } from './plan.js';
import { renderManagedFiles } from '../render.js';
import { confirmPlan } from '../confirm.js';
import { shellQuote } from '../../ports/index.js';
import { planSetupSlaveLondiste } from './londiste.js';
import { gatherLondisteFacts } from '../../londiste/facts.js';
import { renderLondisteFiles } from '../../londiste/render.js';

export interface SetupSlaveCliOptions extends SetupSlaveOptions {
  /** Londiste mode: install missing Skytools packages with apt. */
  readonly installPackages?: boolean;
  readonly bundle?: string;
  /** true: peer.ssh.target; a string: that [user@]host. */
  readonly fromMaster?: string | true;
}

interface LoadedBundle {
  readonly dir: string;
  readonly manifest: BundleManifest;
  readonly secret: string;
  readonly files: ReadonlyMap<string, Buffer>;
}

async function fetchOverSsh(ctx: CommandContext, target: string | true, dest: string): Promise<void> {
  const config = ctx.config;
  const base = config.peer.ssh ?? { target: '', port: 22, ctl: ['chef-ha-ctl'], connectTimeoutMs: 5000 };
  const ssh = { ...base, ...(target === true ? {} : { target }) };
  if (!ssh.target) {
    throw new UsageError(
      '--from-master needs a [user@]host, or peer.ssh.target in the config',
      'pass --from-master root@MASTER',
    );
  }
  const argv = renderSshArgv({ ...config, peer: { ...config.peer, ssh } }, ['export-bundle']);
  if (!argv) {
    throw new UsageError('--from-master needs ssh settings', 'set peer.ssh in the config');
  }
  ctx.reporter.info(`fetching the join bundle: ${shellQuote(argv)}`);
  const result = await ctx.ports.shell.run(argv, { timeoutMs: 120_000, binary: true });
  if (result.exitCode !== 0 || !result.stdoutBytes || result.stdoutBytes.length === 0) {
    throw new RefusedError(
      `could not fetch the join bundle from ${ssh.target} over ssh (exit ${result.exitCode}): ${result.stderr.trim().split('\n').slice(-3).join(' / ') || 'no output'}; nothing was changed`,
      undefined,
      `check ssh access (keys, known_hosts, peer.ssh), or copy the bundle by hand and use --bundle FILE`,
    );
  }
  await ctx.ports.files.writeAtomic(dest, result.stdoutBytes, 0o600);
}

async function loadBundle(ctx: CommandContext, file: string, workDir: string): Promise<LoadedBundle> {
  const { files, archive } = ctx.ports;
  if (!(await files.exists(file))) {
    throw new UsageError(
      `bundle file ${file} does not exist`,
      'on the master, `chef-ha-ctl export-bundle --output FILE` writes one; copy it here',
    );
  }
  await files.mkdirp(workDir, 0o700);
  try {
    await archive.extract(file, workDir);
  } catch (error) {
    throw new RefusedError(
      `bundle ${file} is corrupt or not a chef-ha join bundle (${describeError(error)}); nothing was changed`,
      undefined,
      'export it again on the master and copy it in binary mode',
    );
  }
  const all = new Map<string, Buffer>();
  for (const entry of await files.walk(workDir)) {
    if (entry.info.isFile && entry.path !== 'SHA256SUMS') {
      all.set(entry.path, await files.readBytes(path.join(workDir, entry.path)));
    }
  }
  const sums = await files.readTextIfExists(path.join(workDir, 'SHA256SUMS'));
  if (sums === undefined) {
    throw new RefusedError(
      `bundle ${file} has no SHA256SUMS: not a chef-ha join bundle; nothing was changed`,
      undefined,
      'export it again on the master',
    );
  }
  const problems = verifySums(sums, all);
  if (problems.length > 0) {
    throw new RefusedError(
      `bundle ${file} fails its checksum: ${problems.join('; ')}; nothing was changed`,
      undefined,
      'the file was damaged or edited in transit: export it again on the master',
    );
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(all.get('manifest.json')?.toString('utf8') ?? 'null');
  } catch {
    manifest = null;
  }
  const mProblems = checkManifest(manifest, {
    nodeName: ctx.config.node.name,
    peerName: ctx.config.peer.name,
    major: ctx.config.postgres.version,
    mode: ctx.config.replication.mode,
  });
  if (mProblems.length > 0) {
    throw new RefusedError(
      `bundle ${file} does not fit this node: ${mProblems.join('; ')}; nothing was changed`,
      undefined,
      "use the bundle of this pair's master, or fix node/peer names and postgres.version in the config",
    );
  }
  const secret = all.get('secret/replication.password')?.toString('utf8').trim() ?? '';
  return { dir: workDir, manifest: manifest as BundleManifest, secret, files: all };
}

async function etcMatchesBundle(ctx: CommandContext, bundle: LoadedBundle): Promise<boolean> {
  for (const e of bundle.manifest.etc) {
    if (e.type !== 'file' || !(e.path.endsWith('.pem') || e.path.endsWith('secrets.json'))) {
      continue;
    }
    const mine = await ctx.ports.files.readTextIfExists(path.join(ctx.config.chefServer.etcDir, e.path));
    const theirs = bundle.files.get(`etc-chef-server/${e.path}`);
    if (mine === undefined || !theirs || sha256(mine) !== sha256(theirs)) {
      return false;
    }
  }
  return true;
}

export async function setupSlave(ctx: CommandContext, options: SetupSlaveCliOptions): Promise<void> {
  await withLock(ctx, 'setup-slave', () => run(ctx, options));
}

async function run(ctx: CommandContext, options: SetupSlaveCliOptions): Promise<void> {
  const { files } = ctx.ports;
  const config = ctx.config;
  // The extracted bundle holds private keys and the replication secret: it lives in the 0700 state
  // directory, and what an interrupted (killed) run left there is removed first. A dry run creates
  // nothing in the state directory, so it extracts under the temp dir instead (0700, removed at the end).
  let workDir: string;
  if (ctx.options.dryRun) {
    workDir = path.join(tmpdir(), `chef-ha-incoming-${randomBytes(6).toString('hex')}`);
  } else {
    await files.mkdirp(config.stateDir, 0o700);
    for (const name of await files.listDir(config.stateDir)) {
      if (name.startsWith('incoming-')) {
        await files.removeTree(path.join(config.stateDir, name));
      }
    }
    workDir = path.join(config.stateDir, `incoming-${randomBytes(6).toString('hex')}`);
  }
  try {
    let bundleFile = options.bundle;
    if (bundleFile === undefined) {
      bundleFile = path.join(workDir, 'join-bundle.tar.gz');
      await files.mkdirp(workDir, 0o700);
      await fetchOverSsh(ctx, options.fromMaster ?? true, bundleFile);
    }
    const bundle = await loadBundle(ctx, bundleFile, path.join(workDir, 'bundle'));
    const facts = await gatherPairFacts(ctx, bundle.secret);
    const stored = await ctx.secrets.read('replication');
    const passfile = await files.readTextIfExists(config.postgres.passfile).catch(() => undefined);
    if (config.replication.mode === 'londiste') {
      await runLondiste(ctx, options, bundle, facts, stored === bundle.secret, passfile);
      return;
    }
    const rendered = renderManagedFiles(ctx, {
      role: 'standby',
      primary: { host: config.peer.address, port: config.peer.postgresPort },
    });
    if (!rendered.standbyFile) {
      throw new Error('internal: no standby file rendered');
    }
    const plan = planSetupSlave({
      facts,
      config,
      options,
      rendered: { ...rendered, standbyFile: rendered.standbyFile },
      manifest: bundle.manifest,
      bundleDir: bundle.dir,
      bundleChefServerRb: bundle.files.get('etc-chef-server/chef-server.rb')?.toString('utf8'),
      etcMatches: await etcMatchesBundle(ctx, bundle),
      secretMatches: stored === bundle.secret,
      passfileCurrent:
        passfile !== undefined && passfile.includes(`:${config.replication.user}:${bundle.secret}`),
      neededBytes:
        Math.ceil((facts.peer.server ? await masterClusterBytes(ctx, bundle.secret) : 0) * 1.1) +
        config.minFreeDiskBytes,
      backupDir: backupDirFor(config, ctx.ports.clock.now()),
    });
    await confirmPlan(ctx, plan);
    const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
    if (!ctx.options.dryRun) {
      ctx.reporter.result(
        `${config.node.name} is the ${config.replication.synchronous ? 'synchronous' : 'asynchronous'} streaming standby of ${bundle.manifest.master.name}. Backups of what was replaced: ${plan.backupDir ?? '-'}`,
        {
          command: 'setup-slave',
          node: config.node.name,
          master: bundle.manifest.master.name,
          completed: result.completed,
          skipped: result.skipped,
          backupDir: plan.backupDir,
        },
      );
    }
  } finally {
    await files.removeTree(workDir);
  }
}

/** Londiste mode: the slave becomes a branch of the master's root (see londiste.ts). */
async function runLondiste(
  ctx: CommandContext,
  options: SetupSlaveCliOptions,
  bundle: LoadedBundle,
  facts: Awaited<ReturnType<typeof gatherPairFacts>>,
  secretMatches: boolean,
  passfile: string | undefined,
): Promise<void> {
  const config = ctx.config;
  // Facts as the bundle's secret sees the master (the stored one may be older or missing).
  const stored = await ctx.secrets.read('replication');
  const londiste = await gatherLondisteFacts(ctx, bundle.secret);
  const rendered = renderManagedFiles(ctx, { role: 'primary' });
  const plan = planSetupSlaveLondiste({
    facts,
    config,
    options: { force: options.force },
    rendered,
    settingsLines: rendered.settingsLines,
    backupDir: backupDirFor(config, ctx.ports.clock.now()),
    londiste,
    renderedLondiste: renderLondisteFiles(ctx),
    installPackages: options.installPackages ?? false,
    manifest: bundle.manifest,
    bundleDir: bundle.dir,
    bundleChefServerRb: bundle.files.get('etc-chef-server/chef-server.rb')?.toString('utf8'),
    etcMatches: await etcMatchesBundle(ctx, bundle),
    secretMatches: secretMatches && stored === bundle.secret,
    passfileCurrent:
      passfile !== undefined && passfile.includes(`:${config.replication.user}:${bundle.secret}`),
  });
  await confirmPlan(ctx, plan);
  const result = await executePlan(ctx, plan, { dryRun: ctx.options.dryRun });
  if (!ctx.options.dryRun) {
    const dump = plan.steps.find((s) => s.id === 'backup-replicated-tables');
    ctx.reporter.result(
      `${config.node.name} is a Londiste branch of ${bundle.manifest.master.name} (queue ${config.londiste.queue}); tables ${config.chefServer.tables.join(', ')} replicate.${dump && !dump.done ? ` The slave's former rows of those tables: ${String((dump as { args?: { file?: string } }).args?.file)}` : ''} Backups: ${plan.backupDir ?? '-'}`,
      {
        command: 'setup-slave',
        mode: 'londiste',
        node: config.node.name,
        master: bundle.manifest.master.name,
        completed: result.completed,
        skipped: result.skipped,
        backupDir: plan.backupDir,
      },
    );
  }
}

/** Size of the master's cluster (all databases), for the free-space check. */
async function masterClusterBytes(ctx: CommandContext, password: string): Promise<number> {
  try {
    const rows = await ctx.ports.pg.queryPeer<{ bytes: string }>(
      {
        host: ctx.config.peer.address,
        port: ctx.config.peer.postgresPort,
        user: ctx.config.replication.user,
        password,
        database: 'postgres',
      },
      'SELECT sum(pg_database_size(datname))::bigint::text AS bytes FROM pg_database',
    );
    return Number(rows[0]?.bytes ?? 0);
  } catch {
    return 0;
  }
}
