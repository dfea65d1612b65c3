// What commands refuse before calling the engine, and the way past a refusal the engine made.
import * as vscode from 'vscode';
import { MachineError, type MachineDetails } from '../../engine/machine';
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

/**
 * A snapshot that linked clones hang on (it or a snapshot below it) cannot be deleted: refuse before asking
 * "cannot be undone?", with the engine's code so the message offers "Show Clones".
 */
export async function requireUnlocked(ctx: CommandContext, machine: MachineDetails, snapshotId: string): Promise<void> {
  const below = new Set([snapshotId]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of machine.snapshots) if (s.parentId !== null && below.has(s.parentId) && !below.has(s.id)) grew = below.add(s.id) !== undefined;
  }
  const ids = [...new Set(machine.snapshots.filter((s) => below.has(s.id)).flatMap((s) => s.lockedBy))];
  if (ids.length === 0) return;
  const machines = await (await ctx.library()).list();
  const name = (id: string): string => machines.find((m) => m.id === id)?.name ?? id;
  const snapshot = machine.snapshots.find((s) => s.id === snapshotId);
  throw new MachineError(
    'LOCKED_BY_CLONES',
    ids.length === 1
      ? vscode.l10n.t('Snapshot “{0}” is locked: the linked clone {1} reads its disk layers. Delete or promote it first.', snapshot?.name ?? snapshotId, `“${name(ids[0]!)}”`)
      : vscode.l10n.t('Snapshot “{0}” is locked: the linked clones {1} read its disk layers. Delete or promote them first.', snapshot?.name ?? snapshotId, ids.map((id) => `“${name(id)}”`).join(', ')),
    ids.map((id) => `${name(id)} (id ${id})`),
  );
}
