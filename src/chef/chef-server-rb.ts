/**
 * chef-ha's marked block in /etc/chef-server/chef-server.rb: the attributes the recipe override reads.
 * Everything outside the block is the operator's and is kept byte for byte.
 */
export const RB_BEGIN = '# BEGIN chef-ha (managed by chef-ha-ctl; do not edit inside this block)';
export const RB_END = '# END chef-ha';

export interface ChefServerRbInput {
  readonly vip: string;
  readonly port: number;
  readonly bindir: string;
  readonly socketDir: string;
  readonly osUser: string;
  readonly mode: string;
  readonly version: string;
}

function rubyString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The block's lines. Pure. */
export function renderChefServerRbBlock(input: ChefServerRbInput): string {
  return [
    RB_BEGIN,
    `postgresql['vip'] = ${rubyString(input.vip)}`,
    `postgresql['port'] = ${input.port}`,
    `postgresql['chef_ha_bindir'] = ${rubyString(input.bindir)}`,
    `postgresql['chef_ha_socket_dir'] = ${rubyString(input.socketDir)}`,
    `postgresql['chef_ha_os_user'] = ${rubyString(input.osUser)}`,
    `postgresql['chef_ha_version'] = ${rubyString(input.version)}`,
    `postgresql['chef_ha_mode'] = ${rubyString(input.mode)}`,
    RB_END,
  ].join('\n');
}

/** Replaces (or appends) a marked block in a text. Pure; `undefined` text is an absent file. */
export function replaceMarkedBlock(
  text: string | undefined,
  begin: string,
  end: string,
  block: string,
  atTop = false,
): string {
  const current = text ?? '';
  const start = current.indexOf(begin);
  const stop = start >= 0 ? current.indexOf(end, start) : -1;
  if (start >= 0 && stop >= 0) {
    return current.slice(0, start) + block + current.slice(stop + end.length);
  }
  if (atTop) {
    return `${block}\n${current}`;
  }
  const sep = current === '' || current.endsWith('\n') ? '' : '\n';
  return `${current}${sep}${block}\n`;
}

/** Removes a marked block (and its trailing newline). Pure. */
export function removeMarkedBlock(text: string, begin: string, end: string): string {
  const start = text.indexOf(begin);
  const stop = start >= 0 ? text.indexOf(end, start) : -1;
  if (start < 0 || stop < 0) {
    return text;
  }
  let after = stop + end.length;
  if (text[after] === '\n') {
    after += 1;
  }
  return text.slice(0, start) + text.slice(after);
}
