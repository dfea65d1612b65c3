// The question before an irreversible deletion: a quick pick whose first, focused choice keeps everything.
import * as vscode from 'vscode';
import type { CommandContext } from './context';

/**
 * Asks before an irreversible action; true only when the user chose `action`. VS Code's modal message always
 * focuses its first button that is not the close affordance (an `isCloseAffordance` item becomes the dialog's
 * Cancel, placed last, never focused), so in a modal Enter would run the deletion. In this quick pick the first,
 * active item keeps everything: Enter and Escape both keep, and deleting is a deliberate choice of the second row.
 */
export async function confirmDestructive(ctx: CommandContext, question: string, detail: string, action: string): Promise<boolean> {
  return (await chooseDestructive(ctx, question, [{ label: action, detail, value: true }])) === true;
}

/** The same question with several ways to go on, each after the first row that keeps everything; undefined: keep. */
export async function chooseDestructive<T>(ctx: CommandContext, question: string, actions: { label: string; detail: string; value: T }[]): Promise<T | undefined> {
  const picked = await ctx.ask.pick<{ go: T } | null>(
    [
      { label: `$(circle-slash) ${vscode.l10n.t('Keep It')}`, description: vscode.l10n.t('nothing is changed'), value: null },
      ...actions.map((a) => ({ label: `$(trash) ${a.label}`, detail: a.detail, value: { go: a.value } })),
    ],
    { title: question, placeHolder: vscode.l10n.t('{0} Enter keeps it.', question) },
  );
  return picked?.value?.go;
}
