/** Shapes of the sandbox API and of DIR/sandbox.json (DESIGN.md section 8). */

export type NetMode = 'loopback' | 'netns';
export type ReplicationMode = 'streaming' | 'londiste';

export interface UpOptions {
  /** number of stand-in Chef Server nodes (default 2, at least 2) */
  readonly nodes?: number;
  /** loopback (default): every node on 127.0.0.1; netns: a network namespace per node (docs/sandbox.md) */
  readonly net?: NetMode;
  readonly mode?: ReplicationMode;
  /** replication.synchronous in every chef-ha.json */
  readonly sync?: boolean;
  /** a proxy host running Debian's HAProxy in front of the nodes (its own namespace in netns mode) */
  readonly proxy?: boolean;
  /** an etcd member on the proxy host (needs proxy); fills dcs.etcd.endpoints in every chef-ha.json */
  readonly etcd?: boolean;
  /** with etcd: failover.automatic = true in every chef-ha.json as well */
  readonly automaticFailover?: boolean;
}

export interface SandboxNode {
  readonly name: string;
  readonly address: string;
  /** the directory standing in for this host's "/" */
  readonly root: string;
  /** path of this node's chef-ha.json */
  readonly config: string;
  /** path of this node's chef-server-ctl (stand-in) */
  readonly ctl: string;
  /** base URL of the Chef API stand-in (erchef) */
  readonly chefApi: string;
  /** the distribution PostgreSQL 15 "main" cluster */
  readonly postgres: {
    readonly host: string;
    readonly port: number;
    readonly socketDir: string;
    readonly dataDir: string;
    readonly confDir: string;
    readonly bindir: string;
    readonly logFile: string;
  };
  /** chef-server's embedded cluster (stand-in: PostgreSQL 15 too) */
  readonly embeddedPostgres: {
    readonly host: string;
    readonly port: number;
    readonly socketDir: string;
    readonly dataDir: string;
    readonly superuser: string;
  };
  readonly healthPort: number;
  readonly sshPort: number;
  /** network namespace (netns mode only) */
  readonly netns: string | null;
}

export interface RecordedPid {
  readonly pid: number;
  readonly node: string;
  readonly what: string;
}

export interface SandboxInfo {
  readonly dir: string;
  readonly net: NetMode;
  readonly repo: string;
  readonly state: 'starting' | 'up' | 'down';
  readonly mode: ReplicationMode;
  readonly synchronous: boolean;
  readonly basePort: number;
  /** private key of the sandbox's ssh client keypair (copied into each node's root/.ssh) */
  readonly sshIdentityFile: string;
  readonly nodes: readonly SandboxNode[];
  /** processes started by `up` (down also finds the ones started later by pid files) */
  readonly pids: readonly RecordedPid[];
  readonly createdAt: string;
  /** netns mode only: the bridge namespace, subnet and the test host's link (null in loopback mode) */
  readonly network?: SandboxNetwork | null;
  /** the proxy host (with --proxy only) */
  readonly proxy?: SandboxProxy | null;
  /** the etcd member on the proxy host (with --etcd only) */
  readonly etcd?: SandboxEtcd | null;
}

export interface SandboxEtcd {
  /** client URL, as in dcs.etcd.endpoints */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly pidFile: string;
  readonly log: string;
  /** network namespace (the proxy host's; netns mode only) */
  readonly netns: string | null;
}

export interface SandboxNetwork {
  readonly bridgeNetns: string;
  readonly subnet: string;
  /** the root namespace's address on the bridge: the tests reach the nodes from it */
  readonly hostAddress: string;
  /** the root namespace's veth into the bridge */
  readonly hostLink: string;
}

export interface SandboxProxy {
  readonly address: string;
  /** base URL of the Chef API frontend */
  readonly chefApi: string;
  /** host:port of the PostgreSQL frontend (the writable primary) */
  readonly postgres: string;
  /** host:port of the read-only PostgreSQL frontend (standbys within the lag bound) */
  readonly postgresReadOnly: string;
  /** host:port of HAProxy's TCP runtime API (chef-ha.json haproxy.runtimeApi) */
  readonly runtimeApi: string;
  /** HAProxy's admin socket (a filesystem path: reachable from any namespace) */
  readonly adminSocket: string;
  /** haproxy.cfg, written by `chef-ha-ctl haproxy-config --output` */
  readonly config: string;
  /** the server-state seed (every server DOWN until its first check) */
  readonly stateFile: string;
  readonly pidFile: string;
  readonly log: string;
  /** network namespace (netns mode only) */
  readonly netns: string | null;
}
