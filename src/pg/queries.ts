/**
 * SQL text chef-ha sends, as constants or builders over the version's function names. Values that come
 * from outside are parameters (peer queries) or go through quoteLiteral/quoteIdent (local psql).
 */
import type { PgFeatures } from './version.js';

/** One row describing a server: role, timeline, positions, settings that matter. */
export function serverStateQuery(f: PgFeatures): string {
  return `SELECT current_setting('server_version_num')::int AS version_num,
       pg_is_in_recovery() AS in_recovery,
       ${f.controlFunctions ? '(SELECT timeline_id FROM pg_control_checkpoint())' : 'NULL::int'} AS checkpoint_timeline,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE ${f.fn.currentLsn}()::text END AS current_lsn,
       ${f.fn.receiveLsn}()::text AS receive_lsn,
       ${f.fn.replayLsn}()::text AS replay_lsn,
       extract(epoch FROM (now() - pg_last_xact_replay_timestamp()))::float8 AS replay_age_s,
       ${f.controlFunctions ? '(SELECT system_identifier::text FROM pg_control_system())' : 'NULL::text'} AS system_identifier,
       current_setting('synchronous_standby_names') AS synchronous_standby_names,
       current_setting('default_transaction_read_only') AS default_transaction_read_only,
       current_setting('data_directory') AS data_directory`;
}

/** The timeline a primary writes on (pg_control_checkpoint lags after promotion; WAL file name does not). */
export function currentTimelineQuery(f: PgFeatures): string {
  const walFile = f.lagColumns ? 'pg_walfile_name' : 'pg_xlogfile_name';
  const received = f.controlFunctions
    ? '(SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1)'
    : 'NULL::int';
  return `SELECT CASE WHEN pg_is_in_recovery() THEN ${received}
       ELSE ('x' || substr(${walFile}(${f.fn.currentLsn}()), 1, 8))::bit(32)::int END AS timeline`;
}

/** Standbys connected to this primary. */
export function replicationQuery(f: PgFeatures): string {
  return `SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
       ${f.fn.sentColumn}::text AS sent_lsn, ${f.fn.flushColumn}::text AS flush_lsn, ${f.fn.replayColumn}::text AS replay_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE ${f.fn.lsnDiff}(${f.fn.currentLsn}(), ${f.fn.replayColumn})::bigint END AS lag_bytes,
       ${f.lagColumns ? 'extract(epoch FROM replay_lag)::float8' : 'NULL::float8'} AS replay_lag_s
  FROM pg_stat_replication`;
}

/** The WAL receiver of a standby (PostgreSQL 9.6+). */
export const WAL_RECEIVER_QUERY = `SELECT status, sender_host, sender_port, received_tli,
       latest_end_lsn::text AS latest_end_lsn,
       extract(epoch FROM (now() - last_msg_receipt_time))::float8 AS last_msg_age_s
  FROM pg_stat_wal_receiver`;

export function settingsQuery(f: PgFeatures): string {
  return `SELECT name, setting, ${f.pendingRestart ? 'pending_restart' : 'false AS pending_restart'} FROM pg_settings
 WHERE name IN ('wal_level','max_wal_senders','max_replication_slots','wal_log_hints','hot_standby',
   'synchronous_standby_names','listen_addresses','wal_keep_size','wal_keep_segments','default_transaction_read_only',
   'data_directory','config_file','hba_file','port','wal_retrieve_retry_interval')`;
}

export const SLOTS_QUERY = `SELECT slot_name, active, restart_lsn::text AS restart_lsn FROM pg_replication_slots WHERE slot_type = 'physical'`;

export function roleExistsQuery(roleLiteral: string): string {
  return `SELECT rolname, rolreplication FROM pg_roles WHERE rolname = ${roleLiteral}`;
}

export function databaseExistsQuery(dbLiteral: string): string {
  return `SELECT datname, pg_database_size(datname)::bigint AS size_bytes FROM pg_database WHERE datname = ${dbLiteral}`;
}

/**
 * Counts of Chef objects beyond a fresh install's bootstrap (chef-validator, chef-webui, admin, _default).
 * Tables that do not exist count as 0.
 */
export const CHEF_DATA_QUERY = `SELECT t.name,
   (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I %s', t.name, t.filter), false, true, '')))[1]::text::bigint AS rows
  FROM (VALUES ('clients', $$WHERE name NOT IN ('chef-validator','chef-webui')$$),
               ('osc_users', $$WHERE username <> 'admin'$$),
               ('nodes', ''), ('cookbooks', ''), ('roles', ''), ('data_bags', ''),
               ('environments', $$WHERE name <> '_default'$$)) AS t(name, filter)
 WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = t.name AND c.relkind = 'r' AND pg_table_is_visible(c.oid))`;

/** Creates the slot unless it exists. */
export function createSlotSql(slotLiteral: string): string {
  return `SELECT pg_create_physical_replication_slot(${slotLiteral}) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slotLiteral});`;
}

/**
 * The monitor's sample of its own server, one row: role, timeline, WAL position, the synchronous
 * standby's row and the age of the oldest commit waiting for it (wait_event SyncRep). Ages come from
 * the server's clock_timestamp(), so that they do not depend on when the answer arrives.
 */
export function monitorSampleQuery(f: PgFeatures, standbyLiteral: string): string {
  const replyTime = f.replyTime ? '(extract(epoch FROM reply_time) * 1000)::float8' : 'NULL::float8';
  return `SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') = 'on' AS read_only,
       current_setting('synchronous_standby_names') AS synchronous_standby_names,
       (SELECT timeline FROM (${currentTimelineQuery(f)}) t) AS timeline,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE ${f.fn.currentLsn}()::text END AS current_lsn,
       (SELECT (extract(epoch FROM clock_timestamp() - min(query_start)) * 1000)::float8
          FROM pg_stat_activity WHERE wait_event = 'SyncRep') AS oldest_sync_rep_wait_ms,
       (SELECT row_to_json(r) FROM (
          SELECT state, sync_state, ${f.fn.flushColumn}::text AS flush_lsn, ${replyTime} AS reply_time_ms
            FROM pg_stat_replication WHERE application_name = ${standbyLiteral}
           ORDER BY backend_start DESC LIMIT 1) r) AS standby,
       (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms`;
}

/** What the monitor and the guard ask the peer: is it a writable primary, and on which timeline. */
export function peerRoleQuery(f: PgFeatures): string {
  return `SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') = 'on' AS read_only,
       (SELECT timeline FROM (${currentTimelineQuery(f)}) t) AS timeline`;
}
