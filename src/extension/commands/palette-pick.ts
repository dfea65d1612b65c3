// Which machine a command run from the palette acts on when libvirt connections are set: the library's machines,
// then under each connection the domains whose rows' menus offer the command (the same `when` clauses on the same
// contextValue, so a palette pick never offers what the row's menu leaves out), then for a snapshot command the
// domain's snapshots that offer it. Without connections, or for a command no libvirt row offers, the library's
// own question is asked as before.
import * as vscode from 'vscode';
import type { MachineSummary } from '../../engine/machine';
import { formatDate, formatRelativeTime } from '../format';
import { powerLabel } from '../labels';
import { connectionNodes, domainChildren, domainNodes, libvirtContextValue, type LibvirtDomainNode, type LibvirtNode, type LibvirtSnapshotNode } from '../tree/libvirt-rows';
import type { PickItem } from '../ui/prompter';
import type { CommandContext } from './context';
import { offeredCommands, rowMenus, type MenuEntry } from './menu-when';
import { machinePickItem } from './pick-items';

/** What the palette's pick chose: a library machine (its id, for the library's command) or a libvirt row. */
export type PaletteTarget = { kind: 'library'; machineId: string } | { kind: 'libvirt'; node: LibvirtNode };

/** A libvirt domain with the rows of it that offer the command: the domain's own row, or some of its snapshots. */
interface Offering {
  domain: LibvirtDomainNode;
  onDomain: boolean;
  snapshots: LibvirtSnapshotNode[];
}

type Choice = { kind: 'library'; machine: MachineSummary } | { kind: 'libvirt'; offering: Offering } | { kind: 'separator' };

/** Whether command `id` from the palette gets the pick with libvirt domains (connections set, some libvirt row offers it). */
export function asksForLibvirt(ctx: CommandContext, id: string): boolean {
  if (ctx.tree.libvirt.uris.length === 0) return false;
  return rowMenus(ctx.extensionUri).some((m) => m.command === id && /viewItem =~ \/\^libvirt(Domain|Snapshot|Current):/.test(m.when ?? ''));
}

/** Asks which machine (and, on libvirt, which snapshot) command `id` acts on; undefined when the user cancelled. */
export async function pickPaletteTarget(ctx: CommandContext, id: string, placeHolder: string): Promise<PaletteTarget | undefined> {
  const menus = rowMenus(ctx.extensionUri);
  const [machines, offerings] = await Promise.all([(await ctx.library()).list(), libvirtOfferings(ctx, id, menus)]);
  if (machines.length === 0 && offerings.length === 0) {
    throw new Error(vscode.l10n.t('No machine here can do this: the library has none that could, and no libvirt domain’s row offers it.'));
  }
  const separator = (label: string): PickItem<Choice> => ({ label, kind: vscode.QuickPickItemKind.Separator, value: { kind: 'separator' } });
  const items: PickItem<Choice>[] = machines.length > 0 && offerings.length > 0 ? [separator(vscode.l10n.t('Library'))] : [];
  items.push(...machines.map((m): PickItem<Choice> => ({ ...machinePickItem(m), value: { kind: 'library', machine: m } })));
  let connection = '';
  for (const o of offerings) {
    if (o.domain.parent.label !== connection) {
      connection = o.domain.parent.label;
      items.push(separator(connection));
    }
    const m = o.domain.view.machine;
    items.push({ label: `$(server) ${m.name}`, description: [vscode.l10n.t('{0} snapshots', m.snapshotCount), m.powerState === 'off' ? '' : powerLabel(m.powerState)].filter(Boolean).join(' · '), value: { kind: 'libvirt', offering: o } });
  }
  const picked = await ctx.ask.pick(items, { placeHolder, title: placeHolder });
  if (picked === undefined || picked.value.kind === 'separator') return undefined;
  if (picked.value.kind === 'library') return { kind: 'library', machineId: picked.value.machine.id };
  const o = picked.value.offering;
  if (o.onDomain) return { kind: 'libvirt', node: o.domain };
  const snapshot = await ctx.ask.pick(
    o.snapshots.map((s) => ({ label: `$(device-camera) ${s.snapshot.name}`, description: `${formatRelativeTime(s.snapshot.createdAt)} · ${formatDate(s.snapshot.createdAt)}${s.isCurrentParent ? ` · ${vscode.l10n.t('you are here')}` : ''}`, ...(s.snapshot.description === '' ? {} : { detail: s.snapshot.description }), value: s })),
    { placeHolder: vscode.l10n.t('Choose a snapshot'), title: `${o.domain.view.machine.name}: ${vscode.l10n.t('Choose a snapshot')}` },
  );
  return snapshot === undefined ? undefined : { kind: 'libvirt', node: snapshot.value };
}

/** How long the pick waits for a connection's read: one that does not answer by then (a silent host) is left out. */
const READ_WAIT_MS = 5000;

/** Every domain of the connections read (an unreachable one has none) whose domain row or snapshot rows offer `id`. */
async function libvirtOfferings(ctx: CommandContext, id: string, menus: readonly MenuEntry[]): Promise<Offering[]> {
  const offers = (node: LibvirtNode): boolean => offeredCommands(menus, libvirtContextValue(node)).includes(id);
  const perConnection = await Promise.all(
    connectionNodes(ctx.tree.libvirt).map(async (root) => {
      let timer: NodeJS.Timeout | undefined;
      const read = await Promise.race([ctx.tree.libvirt.read(root.uri), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), READ_WAIT_MS)))]).finally(() => clearTimeout(timer));
      if (read === undefined || !read.ok) return [];
      return domainNodes(root, read.domains).map((domain) => ({ domain, onDomain: offers(domain), snapshots: snapshotRows(domainChildren(domain)).filter(offers) }));
    }),
  );
  return perConnection.flat().filter((o) => o.onDomain || o.snapshots.length > 0);
}

function snapshotRows(nodes: readonly LibvirtNode[]): LibvirtSnapshotNode[] {
  return nodes.flatMap((n) => (n.row === 'snapshot' ? [n, ...snapshotRows(n.children)] : []));
}
