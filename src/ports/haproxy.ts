/**
 * HAProxy's runtime API (the "stats socket"), over TCP ("host:port") or a Unix socket (an absolute path).
 * One connection per command line, as HAProxy's non-interactive mode expects; the answer is the text the
 * proxy writes before closing.
 */
import { connect, type Socket } from 'node:net';

export interface HaproxyRuntime {
  /**
   * Sends one command line (commands may be joined with "; ") and returns HAProxy's answer.
   * @throws Error when the socket cannot be reached or does not answer within timeoutMs.
   */
  command(address: string, line: string, timeoutMs: number): Promise<string>;
}

/** The real runtime API port. */
export function createHaproxyRuntime(): HaproxyRuntime {
  return {
    command(address, line, timeoutMs) {
      return new Promise((resolve, reject) => {
        let socket: Socket;
        if (address.startsWith('/')) {
          socket = connect(address);
        } else {
          const m = /^\[?([^\]]+?)\]?:([0-9]+)$/.exec(address);
          if (!m) {
            reject(new Error(`bad runtime API address "${address}" (use host:port or a socket path)`));
            return;
          }
          socket = connect({ host: m[1] ?? '', port: Number(m[2]) });
        }
        let out = '';
        const timer = setTimeout(() => {
          socket.destroy(
            new Error(`no answer from the HAProxy runtime API at ${address} within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => {
          out += d;
        });
        socket.on('error', (err) => {
          clearTimeout(timer);
          reject(new Error(`HAProxy runtime API at ${address}: ${err.message}`));
        });
        socket.on('close', (hadError) => {
          clearTimeout(timer);
          if (!hadError) {
            resolve(out);
          }
        });
        socket.on('connect', () => {
          socket.end(`${line.replace(/[\r\n]/g, ' ')}\n`);
        });
      });
    },
  };
}
