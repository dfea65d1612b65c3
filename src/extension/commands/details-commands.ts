// "Show Snapshot Details": the Snapshot Manager-style panel for one snapshot.
import * as vscode from 'vscode';
import { SnapshotDetailsPanel } from '../snapshot-details/details-panel';
import type { CommandContext, Target } from './context';

export async function showSnapshotDetails(ctx: CommandContext, target: Target) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Show the details of which snapshot?'));
  if (!picked) return undefined;
  return await SnapshotDetailsPanel.show(ctx.service, ctx.extensionUri, picked.machine.id, picked.snapshot.id);
}
