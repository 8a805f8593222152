/**
 * All output goes through a Reporter: results on stdout, progress and logs on stderr (STYLE.md B8).
 * This is the only module that uses console and chalk.
 */
import chalk, { Chalk } from 'chalk';
import type { Plan, Step } from './plan.js';
import { describeStep } from './plan.js';

export interface Reporter {
  /** The plan before it runs (and all of a dry run). */
  showPlan(plan: Plan, dryRun: boolean): void;
  stepStart(index: number, total: number, step: Step): void;
  stepDone(index: number, total: number, step: Step, durationMs: number, note?: string): void;
  stepSkipped(index: number, total: number, step: Step, reason: string): void;
  /** Progress text from a long step (pg_basebackup). */
  progress(text: string): void;
  info(text: string): void;
  warn(text: string): void;
  /** A debug log line (commands run), shown with --verbose. */
  log(text: string): void;
  /** A result for stdout: text for humans, the object with --json. */
  result(text: string, data: unknown): void;
  /** Raw bytes for stdout (export-bundle to stdout). */
  raw(data: Buffer): void;
  error(message: string, hint?: string): void;
  /**
   * One event of a long-running command (monitor: degrade, restore, fence): a timestamped line on
   * stderr, or with --json one JSON object per line on stdout.
   */
  event(text: string, data: Readonly<Record<string, unknown>>): void;
}

export interface ReporterOptions {
  readonly json: boolean;
  readonly verbose: boolean;
  readonly color: boolean;
}

/** The reporter used by the CLI: human text or JSON on stdout, progress on stderr. */
export function createReporter(options: ReporterOptions): Reporter {
  const c = options.color ? chalk : new Chalk({ level: 0 });
  const err = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  let lastProgress = 0;
  return {
    showPlan(plan, dryRun) {
      err(c.bold(`${plan.command}: ${plan.summary}`));
      if (dryRun) {
        plan.steps.forEach((step, i) => {
          const prefix = `[${i + 1}/${plan.steps.length}] ${step.id}`;
          err(
            step.done
              ? `${prefix}  ${c.dim(`already done: ${step.done}`)}`
              : `${prefix}  would ${describeStep(step)}${step.irreversible ? c.yellow('  (irreversible)') : ''}`,
          );
        });
        err(c.dim('dry run: nothing was changed (facts were read from PostgreSQL and the filesystem)'));
      }
    },
    stepStart(index, total, step) {
      err(`[${index}/${total}] ${c.cyan(step.id)}  ${step.title}`);
    },
    stepDone(index, total, step, durationMs, note) {
      err(
        `[${index}/${total}] ${c.green(step.id)}  done (${(durationMs / 1000).toFixed(2)}s)${note ? `: ${note}` : ''}`,
      );
    },
    stepSkipped(index, total, step, reason) {
      err(`[${index}/${total}] ${c.dim(step.id)}  skipped: ${reason}`);
    },
    progress(text) {
      const now = Date.now();
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        const line = text
          .trim()
          .split(/[\r\n]/)
          .filter(Boolean)
          .pop();
        if (line) {
          err(c.dim(`    ${line.trim()}`));
        }
      }
    },
    info(text) {
      err(text);
    },
    warn(text) {
      err(c.yellow(`warning: ${text}`));
    },
    log(text) {
      if (options.verbose) {
        err(c.dim(text));
      }
    },
    result(text, data) {
      if (options.json) {
        process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
      } else {
        process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    raw(data) {
      process.stdout.write(data);
    },
    event(text, data) {
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...data })}\n`);
      } else {
        err(`${new Date().toISOString()} ${c.bold(text)}`);
      }
    },
    error(message, hint) {
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ error: message, hint: hint ?? null })}\n`);
      }
      err(c.red(`chef-ha-ctl: ${message}`));
      if (hint) {
        err(`hint: ${hint}`);
      }
    },
  };
}
