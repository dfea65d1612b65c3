// `vmsnap vm ssh` and `vmsnap vm ssh-config`: into a running machine with the system ssh, with the machine's own
// known_hosts (the host key cloud-init was given here), never the user's ~/.ssh/known_hosts.
import { spawn } from 'node:child_process';
import { sshArgs } from '../../engine/ssh';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { intOption, openLibrary, VM_ARG } from './shared';

export const vmSshCommand: Command<CliContext> = {
  name: 'ssh',
  summary: 'open a shell in a running machine over SSH, or run a command there',
  args: [VM_ARG],
  rest: { name: 'COMMAND', description: 'a command to run in the guest instead of a shell (after --)' },
  flags: [
    { name: 'user', kind: 'value', valueName: 'NAME', description: 'log in as NAME instead of the machine\'s guest user' },
    { name: 'wait', kind: 'value', valueName: 'SECONDS', description: 'how long to wait for a booting machine\'s SSH server (default 300)' },
  ],
  examples: ['vmsnap vm ssh dev', 'vmsnap vm ssh dev -- cat /etc/hostname'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const user = inv.value('user');
    const wait = {
      timeoutMs: (intOption(inv, 'wait', 0) ?? 300) * 1000,
      signal: ctx.signal,
      onWaiting: () => ctx.out.io.stderr.write(`Waiting for "${vm}" to accept SSH...\n`),
    };
    const target = await lib.sshTarget(vm, { ...(user === undefined ? {} : { user }), wait });
    const command = inv.rest();
    const args = sshArgs(target, { connectTimeoutSeconds: 10, ...(command.length > 0 ? { command } : {}) });
    // A shell needs the terminal; a command's input comes from ours (pipes work both ways).
    const child = spawn(process.env['VMSNAP_SSH'] ?? 'ssh', args, { stdio: 'inherit' });
    return new Promise<number>((resolve) => {
      child.on('error', (e) => {
        ctx.out.io.stderr.write(`Cannot run ssh (${e.message}): install OpenSSH's client (Debian: apt-get install openssh-client).\n`);
        resolve(1);
      });
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
  },
};

export const vmSshConfigCommand: Command<CliContext> = {
  name: 'ssh-config',
  summary: 'print "Host vmsnap-NAME" blocks for ssh and Remote-SSH (also kept in the library as ssh_config)',
  description: 'Ports are chosen when a machine starts, so the blocks cover running machines and the file is rewritten by this command.\nAdd "Include <library>/ssh_config" at the top of ~/.ssh/config (above any "Host *").',
  args: [{ ...VM_ARG, optional: true }],
  flags: [],
  examples: ['vmsnap vm ssh-config', 'vmsnap vm ssh-config dev >> ~/.ssh/config'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const one = inv.arg('VM');
    const blocks = await lib.sshHostBlocks(one);
    if (one === undefined) await lib.writeSshConfig();
    emit(ctx, blocks.map((b) => ({ name: b.name, host: b.host, target: b.target })), () => blocks.map((b) => b.block).join('\n').trimEnd());
    return 0;
  },
};
