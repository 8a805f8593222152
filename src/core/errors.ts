/**
 * The error classes of chef-ha-ctl and the exit code each maps to (DESIGN.md section 2, STYLE.md B5).
 * Only cli.ts turns an error into output and an exit code.
 */

export const ExitCode = {
  Ok: 0,
  Internal: 1,
  Usage: 2,
  Config: 3,
  Refused: 4,
  StepFailed: 5,
  StatusDegraded: 8,
  StatusBroken: 9,
  Interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Base of every error chef-ha-ctl reports on purpose; `hint` says what to do next. */
export abstract class ChefHaError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.hint = hint;
    this.name = new.target.name;
  }
}

/** A bug: anything not anticipated. */
export class InternalError extends ChefHaError {
  readonly exitCode = ExitCode.Internal;
}

/** Bad flags or arguments. */
export class UsageError extends ChefHaError {
  readonly exitCode = ExitCode.Usage;
}

/** The configuration file is missing, unreadable or invalid; `problems` lists every one. */
export class ConfigError extends ChefHaError {
  readonly exitCode = ExitCode.Config;
  readonly problems: readonly string[];
  constructor(message: string, problems: readonly string[] = [], hint?: string, options?: ErrorOptions) {
    super(
      problems.length > 0 ? `${message}\n${problems.map((p) => `  - ${p}`).join('\n')}` : message,
      hint,
      options,
    );
    this.problems = problems;
  }
}

/** A safety check failed before anything was changed. */
export class RefusedError extends ChefHaError {
  readonly exitCode = ExitCode.Refused;
  readonly override: string | undefined;
  constructor(reason: string, override?: string, hint?: string) {
    super(reason, hint ?? (override ? `re-run with ${override} if you accept the risk` : undefined));
    this.override = override;
  }
}

/** A step of a plan failed; some steps may already have run. */
export class StepFailedError extends ChefHaError {
  readonly exitCode = ExitCode.StepFailed;
  readonly stepId: string;
  readonly completed: readonly string[];
  constructor(
    stepId: string,
    detail: string,
    completed: readonly string[],
    hint: string,
    options?: ErrorOptions,
  ) {
    super(
      `step ${stepId} failed: ${detail}\ncompleted steps: ${completed.length > 0 ? completed.join(', ') : '(none)'}`,
      hint,
      options,
    );
    this.stepId = stepId;
    this.completed = completed;
  }
}

/** SIGINT arrived; the current step was finished or stopped. */
export class InterruptedError extends ChefHaError {
  readonly exitCode = ExitCode.Interrupted;
  readonly completed: readonly string[];
  constructor(completed: readonly string[]) {
    super(
      `interrupted; completed steps: ${completed.length > 0 ? completed.join(', ') : '(none)'}`,
      'run the same command again: each step checks whether it is already done',
    );
    this.completed = completed;
  }
}

/** A command that reports a state through its exit code (status) rather than failing. */
export class StatusExit extends ChefHaError {
  readonly exitCode: ExitCodeValue;
  constructor(exitCode: ExitCodeValue, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Formats an unknown thrown value for a message line. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const short = (error as { shortMessage?: unknown }).shortMessage;
    return typeof short === 'string' ? short : error.message;
  }
  return String(error);
}
