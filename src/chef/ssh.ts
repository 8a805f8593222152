/** argv for reaching the peer host over OpenSSH (peer.ssh), running the peer's own chef-ha-ctl. */
import type { Config } from '../core/config.js';

function quote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** ssh argv that runs `chef-ha-ctl <args>` on the peer, or undefined without peer.ssh. Pure. */
export function renderSshArgv(config: Config, args: readonly string[]): [string, ...string[]] | undefined {
  const ssh = config.peer.ssh;
  if (!ssh) {
    return undefined;
  }
  const argv: [string, ...string[]] = [
    'ssh',
    '-p',
    String(ssh.port),
    '-o',
    'BatchMode=yes',
    '-o',
    `ConnectTimeout=${Math.max(1, Math.ceil(ssh.connectTimeoutMs / 1000))}`,
    '-o',
    'ServerAliveInterval=5',
    // curve25519 first: OpenSSH 9's default post-quantum exchange costs ~0.2 s per connection, and a
    // failover waits for this one.
    '-o',
    'KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com,ecdh-sha2-nistp256,diffie-hellman-group14-sha256',
  ];
  if (ssh.identityFile) {
    argv.push('-i', ssh.identityFile, '-o', 'IdentitiesOnly=yes');
  }
  if (ssh.knownHostsFile) {
    argv.push('-o', `UserKnownHostsFile=${ssh.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes');
  }
  argv.push(ssh.target, '--', [...ssh.ctl, ...args].map(quote).join(' '));
  return argv;
}
