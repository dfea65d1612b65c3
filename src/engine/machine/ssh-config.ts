// The library's SSH config: a `Host vmsnap-NAME` block for each running machine launched from a cloud image, in
// `<library>/ssh_config` for an `Include` line (ssh, Remote-SSH). Ports are chosen at each start, so the file is
// rewritten from the running machines whenever a front end asks for it.
import { join } from 'node:path';
import { atomicWrite } from '../os';
import { sshConfigBlock, sshHostName, type SshTarget } from '../ssh';
import { MachineError } from './errors';
import { sshTargetOf } from './guest-access';
import type { LibraryContext } from './library-context';
import { machineStatus } from './power';

export const SSH_CONFIG_FILE = 'ssh_config';

export interface SshHostBlock {
  /** The machine's name and the `Host` alias of its block (vmsnap-NAME). */
  name: string;
  host: string;
  target: SshTarget;
  block: string;
}

/** The blocks of the running machines launched from a cloud image (of `ref` only, when given). */
export async function sshHostBlocks(ctx: LibraryContext, ref?: string): Promise<SshHostBlock[]> {
  const entries = ref === undefined ? await ctx.entries() : [(await ctx.find(ref)).e];
  const blocks: SshHostBlock[] = [];
  for (const e of entries) {
    if (e.manifest.guest === undefined) continue;
    const status = await machineStatus(ctx, e.manifest.id);
    if (status.powerState === 'off') continue;
    const target = sshTargetOf(e.folder, e.manifest, status.forwards);
    blocks.push({ name: e.manifest.name, host: sshHostName(e.manifest.name), target, block: sshConfigBlock(e.manifest.name, target) });
  }
  const seen = new Map<string, string>();
  for (const b of blocks) {
    const other = seen.get(b.host);
    if (other !== undefined) {
      throw new MachineError('INVALID_NAME', `Machines "${other}" and "${b.name}" would both be the SSH host ${b.host}: rename one of them.`);
    }
    seen.set(b.host, b.name);
  }
  return blocks;
}

/** Rewrites `<library>/ssh_config` from the running machines and returns its path. */
export async function writeSshConfig(ctx: LibraryContext): Promise<string> {
  const path = join(ctx.store.dir, SSH_CONFIG_FILE);
  const blocks = await sshHostBlocks(ctx);
  await atomicWrite(path, blocks.map((b) => b.block).join('\n'), false);
  return path;
}
