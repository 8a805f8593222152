/**
 * The health endpoint's HTTP server and refresh loop. Requests are answered from the last snapshot by the
 * pure `answer()`; the loop replaces the snapshot every health.refreshMs and never blocks a request.
 * node:http with bounded concurrency (maxConnections, header and request timeouts, small headers); a
 * malformed request gets 400 from the parser hook, and no request can crash the process.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  answer,
  evaluateSnapshot,
  nextPeerSeenNewer,
  type HealthAnswer,
  type PeerSeenNewer,
} from './answer.js';
import type { HealthSnapshot } from './snapshot.js';

export interface HealthServerOptions {
  readonly listen: string;
  readonly port: number;
  readonly refreshMs: number;
  readonly staleMs: number;
  readonly maxConnections: number;
  readonly requestTimeoutMs: number;
  /**
   * A request arriving this long after the previous one, while the snapshot has the peer unreachable,
   * makes /primary answer 503 until a snapshot started after it has probed the peer again (started at
   * once). A node cut off by a partition gets no checks either; when the link comes back, its last
   * snapshot still says "peer unreachable" although the peer may have been promoted meanwhile.
   */
  readonly recheckAfterGapMs: number;
  /** Takes one snapshot; must not throw (a throw leaves the old snapshot to go stale). */
  readonly probe: () => Promise<HealthSnapshot>;
  readonly now: () => number;
  /**
   * Called when the node's role or its /primary or /standby answer changes, and when a peer re-check
   * starts or ends.
   */
  readonly onChange: (text: string) => void;
  readonly onError: (text: string) => void;
}

export interface RunningHealthServer {
  readonly server: Server;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** The latest snapshot, if any. */
  snapshot(): HealthSnapshot | undefined;
  close(): Promise<void>;
}

function send(res: ServerResponse, a: HealthAnswer, head: boolean): void {
  const body = head ? '' : a.body;
  res.writeHead(a.status, { ...a.headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

/** Starts the server and the refresh loop. Resolves once it listens. */
export async function startHealthServer(o: HealthServerOptions): Promise<RunningHealthServer> {
  let snapshot: HealthSnapshot | undefined;
  let lastChange: number | undefined;
  let lastKey = '';
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  /** When the probe behind the current snapshot started (a slower, older probe never replaces it). */
  let snapshotStartedAt = Number.NEGATIVE_INFINITY;
  let lastRequestAt = o.now();
  let recheck: { since: number; gapMs: number } | undefined;
  let peerSeenNewer: PeerSeenNewer | undefined;

  const refresh = async (): Promise<void> => {
    const startedAt = o.now();
    try {
      const next = await o.probe();
      if (stopped || startedAt < snapshotStartedAt) {
        return;
      }
      snapshot = next;
      snapshotStartedAt = startedAt;
      peerSeenNewer = nextPeerSeenNewer(peerSeenNewer, next);
      // The re-check after a gap ends with a snapshot taken since that has reached the peer. A probe that
      // still finds the peer unreachable does not end it at once: right after a cut heals, the first
      // connection can still be lost (a SYN dropped while the link came back), and the old primary would
      // answer 200 beside the promoted peer until its next snapshot (the fault bench saw 0.4-0.9 s of
      // that). Only when the peer stays unreachable for recheckAfterGapMs is it taken as gone.
      if (
        recheck &&
        startedAt >= recheck.since &&
        (next.peer.reachable || startedAt - recheck.since >= o.recheckAfterGapMs)
      ) {
        o.onChange(
          `${next.node}: peer re-check ended after ${o.now() - recheck.since} ms: ${next.peer.reachable ? 'the peer answered' : `the peer stayed unreachable (${next.peer.error ?? 'no answer'})`}`,
        );
        recheck = undefined;
      }
      const e = evaluateSnapshot(next, { now: o.now(), staleMs: o.staleMs, peerSeenNewer });
      const key = `${e.role} primary=${e.primaryOk ? 200 : 503} standby=${e.streaming ? 200 : 503}`;
      if (key !== lastKey) {
        lastChange = o.now();
        o.onChange(
          `${next.node}: ${e.role}, /primary ${e.primaryOk ? 200 : 503} (${e.primaryReason}), /standby ${e.streaming ? 200 : 503}`,
        );
        lastKey = key;
      }
    } catch (error) {
      o.onError(`health probe failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  const loop = async (): Promise<void> => {
    const started = o.now();
    await refresh();
    if (!stopped) {
      // The next refresh starts refreshMs after this one started, or at once when the probe was slower.
      timer = setTimeout(() => void loop(), Math.max(0, o.refreshMs - (o.now() - started)));
    }
  };

  // GET /refresh: a chef-ha-ctl that just changed this node (promoted it, stopped it, fenced it) asks for
  // a new snapshot at once instead of at the next refresh. Requests coalesce: one extra probe at a time.
  let nudge: Promise<void> | undefined;
  const refreshNow = (): void => {
    nudge ??= refresh().finally(() => {
      nudge = undefined;
    });
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    try {
      if ((req.url ?? '').split('?')[0] === '/refresh') {
        req.resume();
        if (req.method === 'GET' || req.method === 'HEAD') {
          refreshNow();
          send(res, { status: 204, headers: { 'cache-control': 'no-store' }, body: '' }, true);
        } else {
          send(res, { status: 405, headers: { allow: 'GET, HEAD' }, body: '' }, true);
        }
        return;
      }
      const now = o.now();
      const gapMs = now - lastRequestAt;
      lastRequestAt = now;
      if (recheck === undefined && gapMs >= o.recheckAfterGapMs && snapshot && !snapshot.peer.reachable) {
        recheck = { since: now, gapMs };
        o.onChange(
          `${snapshot.node}: requests came back after ${gapMs} ms without any while the peer was unreachable: /primary 503 until the peer is probed again`,
        );
        refreshNow();
      }
      const a = answer(
        snapshot,
        { method: req.method ?? '', url: req.url ?? '' },
        { now, staleMs: o.staleMs, lastChange, peerRecheck: recheck, peerSeenNewer },
      );
      // A request body is never read: drop it instead of buffering it.
      req.resume();
      send(res, a, req.method === 'HEAD');
    } catch (error) {
      o.onError(`health request failed: ${error instanceof Error ? error.message : String(error)}`);
      if (!res.headersSent) {
        send(
          res,
          { status: 503, headers: { 'content-type': 'text/plain' }, body: 'internal error\n' },
          false,
        );
      } else {
        res.destroy();
      }
    }
  };

  const server = createServer(
    {
      requestTimeout: o.requestTimeoutMs,
      headersTimeout: o.requestTimeoutMs,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 8 * 1024,
      noDelay: true,
    },
    handler,
  );
  server.maxConnections = o.maxConnections;
  server.maxRequestsPerSocket = 0;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Malformed requests, oversized headers and timeouts: answer 400 (408 for a timeout) when the socket
    // can still be written, never throw.
    if (socket.writable && !socket.destroyed) {
      const status =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? '431 Request Header Fields Too Large'
            : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    }
    socket.destroy();
  });
  server.on('error', (err) => {
    o.onError(`health server error: ${err.message}`);
  });

  await refresh();
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(err);
    };
    server.once('error', onError);
    server.listen({ host: o.listen, port: o.port, backlog: o.maxConnections }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  timer = setTimeout(() => void loop(), o.refreshMs);
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : o.port;
  return {
    server,
    port,
    snapshot: () => snapshot,
    close: async () => {
      stopped = true;
      if (timer) {
        clearTimeout(timer);
      }
      server.closeIdleConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
    },
  };
}
