/**
 * Plans are data: a command gathers facts, a pure planner turns them into steps, and only the executor
 * performs them. Dry-run prints them, tests compare them (STYLE.md B3).
 */

export type CommandName =
  | 'setup-master'
  | 'setup-slave'
  | 'failover'
  | 'fence'
  | 'reconfigure'
  | 'revert'
  | 'switchover'
  | 'rejoin'
  | 'execute-sql';

/** Names of secrets kept under the state directory; steps refer to them, never to their values. */
export type SecretName = 'replication';

/** The token a `write` step's content uses where the secret's value goes. */
export const SECRET_TOKEN = '@SECRET@';

/** A condition a `wait` step polls for. */
export type Probe =
  | { readonly name: 'local-postgres-up' }
  | { readonly name: 'local-writable' }
  /** The standby `applicationName` is streaming (and `sync` when asked) as seen on the primary. */
  | {
      readonly name: 'standby-streaming';
      readonly on: 'local' | 'peer';
      readonly applicationName: string;
      readonly sync: boolean;
    }
  /** This node (a standby) has replayed at least `lsn`. */
  | { readonly name: 'local-replayed'; readonly lsn: string }
  /**
   * The peer (a standby) has replayed past this node's latest checkpoint as pg_controldata reads it: after
   * a clean shutdown, past the shutdown checkpoint, i.e. everything this node ever wrote.
   */
  | { readonly name: 'peer-replayed-local-checkpoint' }
  /** The peer's pg_control names its current timeline (its end-of-recovery checkpoint is done). */
  | { readonly name: 'peer-checkpointed' }
  /**
   * A node's health endpoint answers /primary with anything but 200 (its snapshot has seen the fence or
   * the stop), or nothing listens there.
   */
  | { readonly name: 'health-not-primary'; readonly on: 'local' | 'peer' };

interface StepBase {
  /** Stable kebab-case id: appears in progress output, errors, tests and --plan-json. */
  readonly id: string;
  readonly title: string;
  /** Set by the planner when the facts show the step's effect is already in place. */
  readonly done?: string | undefined;
  /** The step cannot be undone by re-running; a failure after it needs the manual recovery text. */
  readonly irreversible?: boolean | undefined;
  /**
   * Consecutive steps with the same group name run at the same time (their effects must not depend on
   * each other); the next step starts when all of them have ended.
   */
  readonly concurrent?: string | undefined;
}

export type Step =
  | (StepBase & {
      readonly kind: 'run';
      readonly argv: readonly [string, ...string[]];
      readonly user?: string | undefined;
      readonly env?: Readonly<Record<string, string>> | undefined;
      readonly timeoutMs: number;
      /** Stream the command's stderr as progress (pg_basebackup --progress). */
      readonly progress?: boolean | undefined;
      /** Give the command the terminal (chef-server-ctl output shown as it comes). */
      readonly showOutput?: boolean | undefined;
      /**
       * Start the command and go on without waiting: its output goes to `log`, its exit status to
       * `<log>.exit`, and `job` (a JSON record: pid, log, start time) names it for `status`.
       */
      readonly background?: { readonly log: string; readonly job: string } | undefined;
      /**
       * A command run first, as the current user; its failure fails the step before argv runs
       * (postgres.preStartHook: the pre-start guard where no systemd drop-in runs it).
       */
      readonly before?:
        { readonly argv: readonly [string, ...string[]]; readonly timeoutMs: number } | undefined;
    })
  | (StepBase & {
      readonly kind: 'sql';
      readonly on: 'local' | 'peer';
      readonly database: string;
      readonly text: string;
    })
  | (StepBase & {
      readonly kind: 'write';
      readonly path: string;
      /** File content; SECRET_TOKEN is replaced by the secret's value at execution. */
      readonly content: string;
      readonly secret?: SecretName | undefined;
      readonly mode: number;
      /** OS user (and that user's group) to own the file; root when absent. */
      readonly owner?: string | undefined;
    })
  | (StepBase & { readonly kind: 'remove'; readonly path: string })
  | (StepBase & {
      readonly kind: 'backup';
      /** copy: a copy of a file or tree; move: rename (instant, same filesystem) or copy then remove. */
      readonly method: 'copy' | 'move';
      readonly from: string;
      readonly to: string;
    })
  | (StepBase & {
      readonly kind: 'wait';
      readonly until: Probe;
      readonly timeoutMs: number;
      readonly intervalMs: number;
      /** 'continue': at the timeout the step ends with a warning instead of failing. */
      readonly onTimeout?: 'fail' | 'continue';
    })
  | (StepBase & {
      readonly kind: 'action';
      readonly action: ActionName;
      readonly args: Readonly<Record<string, unknown>>;
    });

/** Compound effects with their own implementation in core/actions.ts. */
export type ActionName =
  | 'ensure-secret'
  | 'import-secret'
  | 'replication-role'
  | 'write-bundle'
  | 'install-etc-chef-server'
  | 'copy-database'
  | 'dump-tables'
  | 'strip-auto-conf'
  | 'move-into-place'
  | 'record-state'
  | 'fence-peer-sql'
  | 'fence-peer-ssh'
  | 'fence-proxy'
  | 'write-fence-file'
  | 'save-diverged-wal'
  | 'rewind'
  /** Best effort: asks a node's health endpoint (GET /refresh) for a new snapshot at once. */
  | 'refresh-health'
  /** Londiste mode's compound steps (src/londiste/actions.ts), chosen by args.op. */
  | 'londiste';

export interface Plan {
  readonly command: CommandName;
  readonly summary: string;
  readonly steps: readonly Step[];
  /** Where this run's backups go (printed at the end). */
  readonly backupDir?: string | undefined;
}

/** The steps run at the same time as `step` (itself included), in plan order. */
export function concurrentGroup(plan: Plan, index: number): readonly Step[] {
  const group = plan.steps[index]?.concurrent;
  if (group === undefined) {
    return plan.steps.slice(index, index + 1);
  }
  let end = index;
  while (plan.steps[end + 1]?.concurrent === group) {
    end++;
  }
  return plan.steps.slice(index, end + 1);
}

/** The ids of the steps, in order (what tests compare). */
export function stepIds(plan: Plan): string[] {
  return plan.steps.map((s) => s.id);
}

/** A one-line rendering of what a step will do, for dry-run and progress. */
export function describeStep(step: Step): string {
  switch (step.kind) {
    case 'run': {
      const q = (argv: readonly string[]): string =>
        argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(' ');
      return `run ${step.before ? `${q(step.before.argv)}, then ` : ''}${step.user ? `(as ${step.user}) ` : ''}${q(step.argv)}${step.background ? ` in the background (log ${step.background.log})` : ''}`;
    }
    case 'sql':
      return `sql on ${step.on} ${step.database}: ${step.text.replace(/\s+/g, ' ').trim().slice(0, 200)}`;
    case 'write':
      return `write ${step.path} (mode ${step.mode.toString(8).padStart(4, '0')}${step.owner ? `, owner ${step.owner}` : ''})`;
    case 'remove':
      return `remove ${step.path}`;
    case 'backup':
      return `${step.method === 'move' ? 'move' : 'copy'} ${step.from} to ${step.to}`;
    case 'wait':
      return `wait up to ${(step.timeoutMs / 1000).toFixed(0)}s until ${describeProbe(step.until)}`;
    case 'action':
      return `${step.action} ${JSON.stringify(step.args)}`;
  }
}

/** Human text for a probe. */
export function describeProbe(probe: Probe): string {
  switch (probe.name) {
    case 'local-postgres-up':
      return 'the local PostgreSQL accepts connections';
    case 'local-writable':
      return 'the local PostgreSQL accepts writes';
    case 'standby-streaming':
      return `${probe.on === 'peer' ? 'the peer' : 'this node'} reports ${probe.applicationName} ${probe.sync ? 'streaming and sync' : 'streaming'}`;
    case 'local-replayed':
      return `this node has replayed WAL up to ${probe.lsn}`;
    case 'peer-replayed-local-checkpoint':
      return "the peer has replayed past this node's last checkpoint (all of its WAL)";
    case 'peer-checkpointed':
      return "the peer's control file names its current timeline (checkpoint after promotion done)";
    case 'health-not-primary':
      return `${probe.on === 'peer' ? "the peer's" : "this node's"} health endpoint no longer answers 200 on /primary`;
  }
}
