// Open Display: the machine's screen in an editor tab (each call opens another tab; they share the screen).
import * as vscode from 'vscode';
import { DisplayPanel } from '../display/display-panel';
import type { CommandContext, Target } from './context';

/**
 * Any machine: a tab on one that is off says so and shows the screen from the moment it starts (a boot loader, an
 * installer). Returns the machine's id (for tests and other extensions).
 */
export async function openDisplay(ctx: CommandContext, target: Target): Promise<string | undefined> {
  const machine = await ctx.machine(target, vscode.l10n.t('Which machine’s screen?'));
  if (!machine) return undefined;
  DisplayPanel.show(ctx.service, ctx.extensionUri, { id: machine.id, name: machine.name });
  return machine.id;
}
