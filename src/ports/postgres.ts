/**
 * PostgreSQL access. The local cluster is reached as its superuser over the Unix socket through psql run
 * as the cluster's OS user (peer authentication, no password anywhere; SQL travels on stdin, never argv).
 * The peer is reached over TCP with node-postgres as the replication role, password from the state dir.
 */
import type { Shell } from './shell.js';
import { CommandError } from './shell.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 3_000;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 2_000;

export interface LocalPgTarget {
  readonly bindir: string;
  readonly socketDir: string;
  readonly port: number;
  readonly osUser: string;
  readonly superuser: string;
}

export interface PeerPgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly connectTimeoutMs?: number;
  readonly statementTimeoutMs?: number;
}

/** A SQL error or an unreachable server, with the SQL that was sent. */
export class SqlError extends CommandError {
  readonly sqlState: string | undefined;
  /**
   * The server was reached and answered with an error (a statement it refused); false when the
   * connection failed, timed out or broke, so that retrying another statement would only wait again.
   */
  readonly serverAnswered: boolean;
  constructor(
    sql: string,
    message: string,
    sqlState?: string,
    options?: ErrorOptions & { readonly serverAnswered?: boolean },
  ) {
    super(`SQL ${sql.trim().split('\n')[0]?.slice(0, 160) ?? ''}`, undefined, '', message, options);
    this.sqlState = sqlState;
    this.serverAnswered = options?.serverAnswered ?? sqlState !== undefined;
  }
}

export interface Postgres {
  /**
   * Runs SQL that returns rows on the local cluster and returns them as objects.
   * @throws SqlError when the server is unreachable or the SQL fails.
   */
  queryLocal<T>(target: LocalPgTarget, database: string, sql: string, timeoutMs?: number): Promise<T[]>;
  /**
   * Runs statements (no result) on the local cluster, in one psql session.
   * @throws SqlError
   */
  execLocal(target: LocalPgTarget, database: string, sql: string, timeoutMs?: number): Promise<void>;
  /**
   * Runs a parameterized query on the peer over TCP.
   * @throws SqlError
   */
  queryPeer<T>(target: PeerPgTarget, sql: string, values?: readonly unknown[]): Promise<T[]>;
}

function psqlArgv(target: LocalPgTarget, database: string): [string, ...string[]] {
  return [
    `${target.bindir}/psql`,
    '-X',
    '-q',
    '-A',
    '-t',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    target.socketDir,
    '-p',
    String(target.port),
    '-U',
    target.superuser,
    '-d',
    database,
    '-f',
    '-',
  ];
}

/** The real PostgreSQL port. */
export function createPostgres(shell: Shell, applicationName: string): Postgres {
  const runPsql = async (
    target: LocalPgTarget,
    database: string,
    sql: string,
    timeoutMs: number,
  ): Promise<string> => {
    const result = await shell.run(psqlArgv(target, database), {
      user: target.osUser,
      input: sql,
      timeoutMs,
      env: { PGAPPNAME: applicationName, PGCONNECT_TIMEOUT: '3' },
    });
    if (result.exitCode !== 0) {
      const state = /ERROR: {2}([0-9A-Z]{5}):/.exec(result.stderr)?.[1];
      // psql exits 3 when a statement failed (ON_ERROR_STOP), 2 when the connection failed or broke
      throw new SqlError(sql, result.stderr.trim() || `psql exited ${result.exitCode}`, state, {
        serverAnswered: result.exitCode === 3,
      });
    }
    return result.stdout;
  };
  return {
    async queryLocal<T>(
      target: LocalPgTarget,
      database: string,
      sql: string,
      timeoutMs = 10_000,
    ): Promise<T[]> {
      const wrapped = `SELECT coalesce(json_agg(q), '[]'::json) FROM (\n${sql.trim().replace(/;\s*$/, '')}\n) q;\n`;
      const out = await runPsql(target, database, wrapped, timeoutMs);
      return JSON.parse(out.trim()) as T[];
    },
    async execLocal(target, database, sql, timeoutMs = 60_000) {
      await runPsql(target, database, sql, timeoutMs);
    },
    async queryPeer<T>(target: PeerPgTarget, sql: string, values: readonly unknown[] = []): Promise<T[]> {
      // Loaded on first use: most commands never talk to the peer, and the CLI should start fast.
      const pg = (await import('pg')).default;
      const client = new pg.Client({
        host: target.host,
        port: target.port,
        user: target.user,
        password: target.password,
        database: target.database,
        connectionTimeoutMillis: target.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        statement_timeout: target.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
        query_timeout: (target.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) + 1000,
        application_name: applicationName,
      });
      // Without a listener, a FATAL from a dying server would crash the process (streaming-lab pitfall 11).
      client.on('error', () => undefined);
      try {
        await client.connect();
        const result = await client.query(sql, values as unknown[]);
        return result.rows as T[];
      } catch (error) {
        const e = error as { message?: string; code?: string };
        throw new SqlError(sql, `${target.host}:${target.port}: ${e.message ?? String(error)}`, e.code, {
          cause: error,
          serverAnswered: error instanceof pg.DatabaseError,
        });
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}
