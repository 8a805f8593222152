#!/usr/bin/env node
/**
 * chef-ha-ctl: commander wiring only. The one place that reads process.argv, builds the ports, maps
 * errors to exit codes and sets process.exitCode (STYLE.md B2, B5).
 */
import { Command, CommanderError, Option } from 'commander';
import { createInterface } from 'node:readline/promises';
import type { Config } from './core/config.js';
import type { CommandContext, GlobalOptions } from './core/context.js';
import { ChefHaError, ConfigError, ExitCode, UsageError } from './core/errors.js';
import { createReporter, type Reporter } from './core/reporter.js';
import { VERSION } from './core/version.js';
import type { Ports } from './ports/index.js';

// Everything heavier than commander is imported when a command runs, so that --version and --help
// start fast (the package's cold-start budget).
const OWN_COMMANDS: ReadonlySet<string> = new Set([
  'setup-master',
  'setup-primary',
  'setup-slave',
  'setup-standby',
  'failover',
  'status',
  'check',
  'export-bundle',
  'fence',
  'revert',
  'londiste-daemons',
  'execute-sql',
  'health-server',
  'haproxy-config',
  'monitor',
  'guard',
  'rejoin',
  'switchover',
  'pause',
  'resume',
  'help',
]);

interface RawGlobals {
  config?: string;
  json?: boolean;
  verbose?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  color?: boolean;
}

const abort = new AbortController();
let interrupted = 0;
process.on('SIGINT', () => {
  interrupted += 1;
  if (interrupted > 1) {
    process.exitCode = ExitCode.Interrupted;
    process.kill(process.pid, 'SIGKILL');
  }
  abort.abort(new Error('interrupted'));
});
// The service manager stops long-running commands (health-server) with SIGTERM.
process.on('SIGTERM', () => {
  abort.abort(new Error('terminated'));
});
// `chef-ha-ctl --help | head`: the reader went away; stop quietly, as other command-line tools do, instead
// of a stack trace from the unhandled write error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') {
      throw error;
    }
    process.exit(process.exitCode ?? 0);
  });
}

function makeReporter(g: RawGlobals): Reporter {
  const color = g.color !== false && process.stderr.isTTY && !process.env['NO_COLOR'];
  return createReporter({ json: g.json === true, verbose: g.verbose === true, color });
}

async function loadConfig(ports: Ports, path: string): Promise<Config> {
  const { parseConfigText } = await import('./core/config.js');
  let text: string | undefined;
  try {
    text = await ports.files.readTextIfExists(path);
  } catch (error) {
    throw new ConfigError(
      `cannot read the config file ${path}: ${error instanceof Error ? error.message : String(error)}`,
      [],
      'check the file permissions (chef-ha-ctl normally runs as root)',
    );
  }
  if (text === undefined) {
    throw new ConfigError(
      `config file ${path} does not exist`,
      [],
      'create it (docs/configuration.md has a complete example) or pass --config FILE / set CHEF_HA_CONFIG',
    );
  }
  return parseConfigText(text, path);
}

async function confirmOnTty(question: string, yes: boolean): Promise<boolean> {
  if (yes) {
    return true;
  }
  if (!process.stdin.isTTY) {
    throw new ChefHaRefusal(
      `${question.replace(/\?$/, '')}: needs confirmation, and there is no terminal to ask on; nothing was changed`,
    );
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

class ChefHaRefusal extends ChefHaError {
  readonly exitCode = ExitCode.Refused;
  constructor(message: string) {
    super(message, 're-run with --yes to confirm without a terminal');
  }
}

async function buildContext(g: RawGlobals, commandName: string): Promise<CommandContext> {
  const { createRealPorts } = await import('./ports/index.js');
  const { resolveConfigPath } = await import('./core/config.js');
  const { createSecretStore } = await import('./core/context.js');
  const reporter = makeReporter(g);
  let secretsRef: () => readonly string[] = () => [];
  const ports = createRealPorts({
    applicationName: `chef-ha-ctl ${commandName}`,
    signal: abort.signal,
    log: (line) => {
      reporter.log(line);
    },
    secrets: () => secretsRef(),
  });
  const options: GlobalOptions = {
    json: g.json === true,
    verbose: g.verbose === true,
    yes: g.yes === true,
    dryRun: g.dryRun === true,
    configPath: resolveConfigPath(g.config),
  };
  const config = await loadConfig(ports, options.configPath);
  const secrets = createSecretStore(config, ports);
  secretsRef = () => secrets.known();
  return {
    config,
    ports,
    reporter,
    options,
    signal: abort.signal,
    confirm: (q) => confirmOnTty(q, options.yes),
    secrets,
  };
}

function reportError(error: unknown, g: RawGlobals): number {
  const reporter = makeReporter(g);
  if (error instanceof CommanderError) {
    if (
      error.code === 'commander.helpDisplayed' ||
      error.code === 'commander.version' ||
      error.code === 'commander.help'
    ) {
      return ExitCode.Ok;
    }
    return ExitCode.Usage;
  }
  if (error instanceof ChefHaError) {
    if (error.message) {
      reporter.error(error.message, error.hint);
    }
    if (g.verbose && error.cause instanceof Error) {
      reporter.log(`cause: ${error.cause.stack ?? error.cause.message}`);
    }
    return error.exitCode;
  }
  const e = error instanceof Error ? error : new Error(String(error));
  reporter.error(
    `internal error (a bug in chef-ha-ctl ${VERSION}; please report it with this output): ${e.stack ?? e.message}`,
  );
  return ExitCode.Internal;
}

function globalsOf(cmd: Command): RawGlobals {
  return cmd.optsWithGlobals<RawGlobals>();
}

function run(fn: (ctx: CommandContext, cmd: Command) => Promise<void>, name: string) {
  return async (...args: unknown[]): Promise<void> => {
    const cmd = args[args.length - 1] as Command;
    const g = globalsOf(cmd);
    try {
      const ctx = await buildContext(g, name);
      await fn(ctx, cmd);
    } catch (error) {
      process.exitCode = reportError(error, g);
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('chef-ha-ctl');
  program
    .description(
      'High availability for open-source Chef Server 11: replication, health checks and safe failover.',
    )
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (default: $CHEF_HA_CONFIG or /etc/chef-ha/chef-ha.json)')
    .option('--json', 'machine-readable output on stdout')
    .option('-v, --verbose', 'log every command run, and full error causes')
    .option('-y, --yes', 'do not ask for confirmation')
    .option(
      '-n, --dry-run',
      'print the plan and change nothing (facts are still read from PostgreSQL and disk)',
    )
    .option('--no-color', 'no colours')
    .exitOverride()
    .showHelpAfterError('(run chef-ha-ctl --help for the commands)')
    .addHelpText(
      'after',
      `
Any other command (reconfigure, restart, tail, reindex, status SERVICE, ...) is passed to chef-server-ctl;
\`chef-ha-ctl reconfigure\` first re-applies the recipe override if a package upgrade put the original back.

Exit codes: 0 ok, 1 internal error, 2 usage, 3 config, 4 refused (nothing changed), 5 a step failed,
8/9 status: degraded / no primary or two primaries, 130 interrupted.`,
    );

  program
    .command('setup-master')
    .alias('setup-primary')
    .description(
      'make this node the master: recipe override, reconfigure, replication role, slot, join bundle',
    )
    .option('--force', 'go on although the peer answers as a primary, or this node was fenced')
    .option('--install-packages', 'londiste mode: install missing Skytools 3 packages with apt')
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{ force?: boolean; installPackages?: boolean }>();
        await (
          await import('./commands/setup-master/index.js')
        ).setupMaster(ctx, { force: o.force === true, installPackages: o.installPackages === true });
      }, 'setup-master'),
    );

  program
    .command('execute-sql')
    .description(
      'londiste mode, on the master: run a schema change (DDL file) through `londiste execute` on both nodes',
    )
    .argument('<file>', 'SQL file (applied once; a changed file is applied again)')
    .action(
      run(async (ctx, cmd) => {
        await (await import('./commands/execute-sql/index.js')).executeSql(ctx, cmd.args[0] ?? '');
      }, 'execute-sql'),
    );

  program
    .command('londiste-daemons')
    .description(
      'londiste mode: supervise pgqd and the worker (run: in the foreground, as a service; start/stop: detached)',
    )
    .argument('<action>', 'run | start | stop | status')
    .action(
      run(async (ctx, cmd) => {
        const action = cmd.args[0] ?? '';
        if (!['run', 'start', 'stop', 'status'].includes(action)) {
          throw new UsageError(`unknown action "${action}"`, 'use run, start, stop or status');
        }
        if (action === 'run') {
          // A service manager stops the supervisor with SIGTERM: stop pgqd and the worker, then exit.
          process.on('SIGTERM', () => {
            abort.abort(new Error('terminated'));
          });
        }
        await (
          await import('./commands/londiste-daemons/index.js')
        ).londisteDaemons(ctx, action as 'run' | 'start' | 'stop' | 'status');
      }, 'londiste-daemons'),
    );

  program
    .command('setup-slave')
    .alias('setup-standby')
    .description("make this node the master's standby: keys, recipe, base backup, streaming, reindex")
    .addOption(
      new Option('--bundle <file>', 'join bundle written by setup-master / export-bundle').conflicts(
        'fromMaster',
      ),
    )
    .option('--from-master [target]', 'fetch the bundle over ssh from the master (default: peer.ssh.target)')
    .option(
      '--force',
      'replace the data of a node that holds Chef data or is the current primary (backed up first)',
    )
    .option(
      '--wait-reindex',
      'wait for chef-server-ctl reindex to end (by default it runs in the background once the standby streams)',
    )
    .option('--install-packages', 'londiste mode: install missing Skytools 3 packages with apt')
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{
          bundle?: string;
          fromMaster?: string | boolean;
          force?: boolean;
          waitReindex?: boolean;
          installPackages?: boolean;
        }>();
        if (o.bundle === undefined && o.fromMaster === undefined) {
          throw new UsageError(
            'setup-slave needs --bundle FILE or --from-master [user@]host',
            'copy the join bundle from the master, or use --from-master with ssh access',
          );
        }
        await (
          await import('./commands/setup-slave/index.js')
        ).setupSlave(ctx, {
          force: o.force === true,
          waitReindex: o.waitReindex === true,
          installPackages: o.installPackages === true,
          ...(o.bundle === undefined ? {} : { bundle: o.bundle }),
          ...(o.fromMaster === undefined || o.fromMaster === false ? {} : { fromMaster: o.fromMaster }),
        });
      }, 'setup-slave'),
    );

  program
    .command('failover')
    .description(
      'the master is dead: fence it where reachable, promote this standby, restart chef services, reindex',
    )
    .option('--force', 'promote although the master answers, or the standby is behind')
    .action(
      run(async (ctx, cmd) => {
        await (
          await import('./commands/failover/index.js')
        ).failover(ctx, { force: cmd.opts<{ force?: boolean }>().force === true });
      }, 'failover'),
    );

  program
    .command('rejoin')
    .description(
      "on the fenced old master after a failover: become the new primary's standby (pg_rewind, or a fresh base backup); londiste: lost rows to JSON, then a branch of the new root",
    )
    .option('--basebackup', 'replace the data directory with a fresh base backup instead of pg_rewind')
    .option(
      '--backup-data-dir',
      'copy the whole data directory into the backup folder before pg_rewind (default: its config and the WAL after the divergence)',
    )
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{ basebackup?: boolean; backupDataDir?: boolean }>();
        await (
          await import('./commands/rejoin/index.js')
        ).rejoin(ctx, { basebackup: o.basebackup === true, backupDataDir: o.backupDataDir === true });
      }, 'rejoin'),
    );

  program
    .command('switchover')
    .description(
      'planned role swap with no lost write: stop the master cleanly, wait for the standby, promote it, rejoin; londiste: takeover on the branch',
    )
    .option('--to <node>', 'the node that becomes the primary (default: the current standby)')
    .addOption(new Option('--promote-standby').hideHelp())
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{ to?: string; promoteStandby?: boolean }>();
        await (
          await import('./commands/switchover/index.js')
        ).switchover(ctx, { to: o.to, promoteStandby: o.promoteStandby === true });
      }, 'switchover'),
    );

  program
    .command('status')
    .description('both nodes side by side; exit 0 healthy, 8 degraded, 9 no primary or two primaries')
    .action(
      run(async (ctx) => {
        await (await import('./commands/status/index.js')).status(ctx);
      }, 'status'),
    );

  program
    .command('pause')
    .description('stop automatic failover cluster-wide (a key in etcd) until resume')
    .option('--reason <text>', 'why, shown by status', 'paused by operator')
    .action(
      run(async (ctx, cmd) => {
        await (
          await import('./commands/pause/index.js')
        ).pause(ctx, { reason: cmd.opts<{ reason: string }>().reason });
      }, 'pause'),
    );

  program
    .command('resume')
    .description('switch automatic failover back on after pause')
    .action(
      run(async (ctx) => {
        await (await import('./commands/resume/index.js')).resume(ctx);
      }, 'resume'),
    );

  program
    .command('check')
    .description('validate the config and the environment, change nothing; exit 0 or 8')
    .action(
      run(async (ctx) => {
        await (await import('./commands/check/index.js')).check(ctx);
      }, 'check'),
    );

  program
    .command('export-bundle')
    .description('write the join bundle again, to a file or to stdout')
    .option('-o, --output <file>', 'where to write it (default: stdout)')
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{ output?: string }>();
        await (
          await import('./commands/export-bundle/index.js')
        ).exportBundle(ctx, o.output === undefined ? {} : { output: o.output });
      }, 'export-bundle'),
    );

  program
    .command('fence')
    .description(
      'make this node read-only now and on every later start, until rejoin (failover runs it over ssh)',
    )
    .option('--reason <text>', 'why, recorded in the state directory', 'fenced by operator')
    .action(
      run(async (ctx, cmd) => {
        await (
          await import('./commands/fence/index.js')
        ).fence(ctx, { reason: cmd.opts<{ reason: string }>().reason });
      }, 'fence'),
    );

  program
    .command('health-server')
    .description(
      'HTTP health endpoint for HAProxy on health.port: /primary, /replica?lag=, /health, /status, /metrics',
    )
    .action(
      run(async (ctx) => {
        await (await import('./commands/health-server/index.js')).healthServer(ctx);
      }, 'health-server'),
    );

  program
    .command('haproxy-config')
    .description(
      'print an haproxy.cfg for this pair (Chef API, PostgreSQL and read-only PostgreSQL frontends)',
    )
    .option(
      '-o, --output <file>',
      'write it to this file, and the DOWN server-state seed to haproxy.stateFile',
    )
    .option('--state', 'print the server-state seed instead (every server DOWN until its first check)')
    .action(
      run(async (ctx, cmd) => {
        const o = cmd.opts<{ output?: string; state?: boolean }>();
        await (
          await import('./commands/haproxy-config/index.js')
        ).haproxyConfig(ctx, {
          state: o.state === true,
          ...(o.output === undefined ? {} : { output: o.output }),
        });
      }, 'haproxy-config'),
    );

  program
    .command('monitor')
    .description(
      'watch this node: degrade a stalled synchronous standby to async and back, fence a superseded primary',
    )
    .addOption(new Option('--max-loops <n>', 'stop after n loops (tests)').hideHelp())
    .action(
      run(async (ctx, cmd) => {
        // A service manager stops the monitor with SIGTERM: finish the current action, then end. `on`,
        // not `once`: execa's exit hook re-raises the signal when it finds no other listener left.
        process.on('SIGTERM', () => {
          abort.abort(new Error('terminated'));
        });
        const o = cmd.opts<{ maxLoops?: string }>();
        const maxLoops = o.maxLoops === undefined ? undefined : Number(o.maxLoops);
        if (maxLoops !== undefined && (!Number.isInteger(maxLoops) || maxLoops < 1)) {
          throw new UsageError('--max-loops needs a positive integer');
        }
        await (
          await import('./commands/monitor/index.js')
        ).monitor(ctx, maxLoops === undefined ? {} : { maxLoops });
      }, 'monitor'),
    );

  program
    .command('guard', { hidden: true })
    .description(
      'before PostgreSQL starts (systemd ExecStartPre): make the start read-only if this node is fenced or superseded',
    )
    .action(
      run(async (ctx) => {
        await (await import('./commands/guard/index.js')).guard(ctx);
      }, 'guard'),
    );

  program
    .command('revert')
    .description(
      'put chef-server back on its embedded PostgreSQL: original recipe, no chef-ha settings (data copied back)',
    )
    .action(
      run(async (ctx) => {
        await (await import('./commands/revert/index.js')).revert(ctx);
      }, 'revert'),
    );

  return program;
}

const GLOBAL_WITH_VALUE = new Set(['-c', '--config']);

/** The first argument that is not a global option (the command name), if any. */
function commandWord(argv: readonly string[]): { index: number; word: string } | undefined {
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i] ?? '';
    if (GLOBAL_WITH_VALUE.has(a)) {
      i += 1;
      continue;
    }
    if (a.startsWith('-')) {
      continue;
    }
    return { index: i, word: a };
  }
  return undefined;
}

async function main(argv: readonly string[]): Promise<void> {
  const args = argv.slice(2);
  const word = commandWord(args);
  // `status SERVICE` is chef-server-ctl's per-service status; plain `status` is chef-ha's pair status.
  const serviceStatus = word?.word === 'status' && args.slice(word.index + 1).some((a) => !a.startsWith('-'));
  if (word && (!OWN_COMMANDS.has(word.word) || serviceStatus)) {
    // Not ours: hand it to chef-server-ctl with its output and exit code.
    const program = new Command('chef-ha-ctl')
      .option('-c, --config <file>')
      .option('--json')
      .option('-v, --verbose')
      .option('-y, --yes')
      .option('-n, --dry-run')
      .option('--no-color')
      .allowUnknownOption()
      .exitOverride();
    program.parse(args.slice(0, word.index), { from: 'user' });
    const g = program.opts<RawGlobals>();
    try {
      const ctx = await buildContext(g, word.word);
      const { passthrough } = await import('./commands/passthrough/index.js');
      process.exitCode = await passthrough(ctx, args.slice(word.index));
    } catch (error) {
      process.exitCode = reportError(error, g);
    }
    return;
  }
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    process.exitCode = reportError(error, {});
  }
}

await main(process.argv);
