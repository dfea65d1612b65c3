// How machines and snapshots read in the quick picks that ask which one a command acts on.
import * as vscode from 'vscode';
import type { MachineDetails, MachineSummary, SnapshotInfo } from '../../engine/machine';
import { formatDate, formatRelativeTime } from '../format';
import { powerLabel } from '../labels';
import type { PickItem } from '../ui/prompter';

export function machinePickItem(m: MachineSummary): PickItem<MachineSummary> {
  const kind = m.clonedFrom ? (m.clonedFrom.kind === 'linked' ? vscode.l10n.t('linked clone') : vscode.l10n.t('full clone')) : '';
  return {
    label: `$(vm) ${m.name}`,
    description: [kind, vscode.l10n.t('{0} snapshots', m.snapshotCount), m.powerState === 'off' ? '' : powerLabel(m.powerState)].filter(Boolean).join(' · '),
    detail: m.note || undefined,
    value: m,
  } as PickItem<MachineSummary>;
}

/**
 * Snapshots in tree order with their path and date, the one the current state descends from marked; a locked one
 * says why in its detail (`cloneName` names the linked clones).
 */
export function snapshotPickItems(machine: MachineDetails, cloneName: (id: string) => string = (id) => id): PickItem<SnapshotInfo>[] {
  const byId = new Map(machine.snapshots.map((s) => [s.id, s]));
  const path = (s: SnapshotInfo): string => {
    const names: string[] = [];
    for (let at: SnapshotInfo | undefined = s; at; at = at.parentId ? byId.get(at.parentId) : undefined) names.unshift(at.name);
    return names.join(' › ');
  };
  return machine.snapshots.map((s) => ({
    label: `${s.lockedBy.length > 0 ? '$(lock)' : '$(device-camera)'} ${s.name}`,
    description: `${formatRelativeTime(s.createdAt)} · ${formatDate(s.createdAt)}${machine.current === s.id ? ` · ${vscode.l10n.t('you are here')}` : ''}`,
    detail: s.lockedBy.length > 0 ? `$(lock) ${vscode.l10n.t('Locked: linked clones {0} read it', s.lockedBy.map((id) => `“${cloneName(id)}”`).join(', '))} · ${path(s)}` : path(s),
    value: s,
  }));
}
