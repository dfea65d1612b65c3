// What commands refuse before calling the engine, and the way past a refusal the engine made.
import * as vscode from 'vscode';
import type { MachineDetails } from '../../engine/machine';
import type { ErrorAction } from '../ui/errors';
import type { CommandContext } from './context';

/** Cloning, deleting and promoting need the machine powered off: say so before the engine is asked. */
export function requireOff(machine: MachineDetails, what: string): void {
  if (machine.powerState !== 'off') {
    throw new Error(vscode.l10n.t('“{0}” is {1}: power it off to {2}.', machine.name, machine.powerState === 'paused' ? vscode.l10n.t('paused') : vscode.l10n.t('running'), what));
  }
}

/**
 * "Show Clones" next to a refusal naming linked clones (deleting a machine or a snapshot they hang on): selects
 * the first of them in the tree (the message names all). Nothing for any other error.
 */
export function lockedActions(ctx: CommandContext, e: unknown): ErrorAction[] {
  const code = typeof e === 'object' && e !== null && 'code' in e ? (e as { code: unknown }).code : undefined;
  if (code !== 'LOCKED_BY_CLONES') return [];
  return [
    {
      title: vscode.l10n.t('Show Clones'),
      run: async () => {
        const all = await ctx.tree.machineNodes();
        const names = (e as { candidates?: readonly string[] }).candidates ?? [];
        const clones = all.filter((n) => names.some((c) => c === n.machine.id || c.includes(n.machine.id) || c === n.machine.name || c.startsWith(`${n.machine.name} `) || c.includes(`"${n.machine.name}"`)));
        if (clones[0]) await ctx.select(async () => clones[0], true);
      },
    },
  ];
}
