/** A Postgres port that records every statement and answers queries from a script. */
import type { LocalPgTarget, PeerPgTarget, Postgres } from '../../src/ports/index.js';
import { SqlError } from '../../src/ports/index.js';

export type PgCall =
  | {
      readonly method: 'queryLocal';
      readonly target: LocalPgTarget;
      readonly database: string;
      readonly sql: string;
    }
  | {
      readonly method: 'execLocal';
      readonly target: LocalPgTarget;
      readonly database: string;
      readonly sql: string;
    }
  | {
      readonly method: 'queryPeer';
      readonly target: PeerPgTarget;
      readonly sql: string;
      readonly values: readonly unknown[];
    };

type Where = 'local' | 'peer';
type Rows = readonly unknown[] | ((sql: string, call: number) => readonly unknown[]);

export class FakePostgres implements Postgres {
  readonly calls: PgCall[] = [];
  private readonly script: {
    readonly where: Where | 'any';
    readonly pattern: RegExp;
    readonly rows: Rows | Error;
    hits: number;
  }[] = [];

  /** Answers queries whose SQL matches `pattern` with rows (first match wins). */
  answer(pattern: RegExp, rows: Rows, where: Where | 'any' = 'any'): this {
    this.script.push({ where, pattern, rows, hits: 0 });
    return this;
  }

  /** Makes statements whose SQL matches `pattern` fail with an SqlError carrying `message`. */
  fail(pattern: RegExp, message: string, where: Where | 'any' = 'any'): this {
    this.script.push({ where, pattern, rows: new SqlError(pattern.source, message), hits: 0 });
    return this;
  }

  private respond(where: Where, sql: string): Promise<unknown[]> {
    const entry = this.script.find((s) => (s.where === 'any' || s.where === where) && s.pattern.test(sql));
    if (!entry) {
      return Promise.resolve([]);
    }
    entry.hits += 1;
    if (entry.rows instanceof Error) {
      return Promise.reject(entry.rows);
    }
    const rows = typeof entry.rows === 'function' ? entry.rows(sql, entry.hits) : entry.rows;
    return Promise.resolve([...rows]);
  }

  queryLocal<T>(target: LocalPgTarget, database: string, sql: string): Promise<T[]> {
    this.calls.push({ method: 'queryLocal', target, database, sql });
    return this.respond('local', sql) as Promise<T[]>;
  }

  async execLocal(target: LocalPgTarget, database: string, sql: string): Promise<void> {
    this.calls.push({ method: 'execLocal', target, database, sql });
    await this.respond('local', sql);
  }

  queryPeer<T>(target: PeerPgTarget, sql: string, values: readonly unknown[] = []): Promise<T[]> {
    this.calls.push({ method: 'queryPeer', target, sql, values });
    return this.respond('peer', sql) as Promise<T[]>;
  }
}
