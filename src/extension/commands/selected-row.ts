// F2 and Delete in the Machines view: the selected row's Rename or Delete, asking what the menu's command asks.
import type { CommandContext } from './context';
import { deleteMachine, renameMachine } from './machine-commands';
import { deleteSnapshot, renameSnapshot } from './snapshot-commands';

/** F2: renames the selected machine or snapshot (a linked clone's row under its snapshot renames the clone). */
export function renameSelected(ctx: CommandContext): Promise<unknown> {
  const node = ctx.view.selection[0];
  switch (node?.kind) {
    case 'machine':
    case 'cloneRef':
      return renameMachine(ctx, node);
    case 'snapshot':
      return renameSnapshot(ctx, node);
    default:
      return Promise.resolve(undefined);
  }
}

/**
 * Delete: deletes the selected snapshot (its changes merged into what depends on it) or machine, after the same
 * question and refusals as the context menu's Delete. "You are here" and a clone's row under its snapshot are not
 * deleted by a key: the first is no file of its own, the second looks like part of the source machine.
 */
export function deleteSelected(ctx: CommandContext): Promise<unknown> {
  const node = ctx.view.selection[0];
  switch (node?.kind) {
    case 'machine':
      return deleteMachine(ctx, node);
    case 'snapshot':
      return deleteSnapshot(ctx, node);
    default:
      return Promise.resolve(undefined);
  }
}
