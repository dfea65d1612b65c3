// Clone on libvirt rows (a domain, its "You are here", or one of its snapshots): the library's clone questions
// (linked or full, then the name), answered by the row's LibvirtSource; what the source refuses is not offered,
// and refused with its reason when asked for anyway. The disks go next to the source's; the new domain is then
// selected under its connection.
import * as vscode from 'vscode';
import type { LibvirtSource } from '../../engine/libvirt';
import { SourceError, unsupported, type CloneKind, type SourceCloneResult, type SourceSnapshot } from '../../engine/sources';
import { connectionNodes, libvirtChildren, libvirtCloneRefusal, type LibvirtDomainNode } from '../tree/libvirt-rows';
import { withProgress } from '../ui/progress';
import type { CloneArgs } from './clone-flow';
import type { CommandContext } from './context';
import { uniqueName } from './names';

/** Clone Current State / Clone from Snapshot on a libvirt row. */
export async function cloneLibvirt(ctx: CommandContext, source: LibvirtSource, domain: LibvirtDomainNode, from: SourceSnapshot | null, args: CloneArgs): Promise<SourceCloneResult | undefined> {
  const m = domain.view.machine;
  if (m.powerState !== 'off') {
    throw new SourceError('POWERED_ON', vscode.l10n.t('“{0}” is {1}: a clone is made of a powered-off domain (as VMware and virt-clone make them), so stop it first.', m.name, m.powerState));
  }
  const what = from === null ? vscode.l10n.t('the current state of “{0}”', m.name) : vscode.l10n.t('snapshot “{0}” of “{1}”', from.name, m.name);
  const refusals = { linked: libvirtCloneRefusal(domain, 'linked', from), full: libvirtCloneRefusal(domain, 'full', from) };
  let kind = args.kind;
  if (kind === undefined) {
    const options = [
      {
        label: vscode.l10n.t('$(link) Linked clone'),
        description: vscode.l10n.t('small and instant'),
        detail:
          from === null
            ? vscode.l10n.t('libvirt takes an external disk-only snapshot of “{0}” first, kept for good; the clone’s disks are overlays on its frozen files.', m.name)
            : vscode.l10n.t('The clone’s disks are overlays on the files “{0}” froze.', from.name),
        value: 'linked' as CloneKind,
      },
      {
        label: vscode.l10n.t('$(files) Full clone'),
        description: vscode.l10n.t('independent copy'),
        detail: vscode.l10n.t('Copies the disks, with a new UUID and new MAC addresses: takes time and space, depends on nothing.'),
        value: 'full' as CloneKind,
      },
    ].filter((o) => refusals[o.value] === undefined);
    // Neither kind (an internal snapshot on a remote host, a remote disk in no pool): the reasons, each once.
    if (options.length === 0) throw unsupported('clone', [...new Set([refusals.linked, refusals.full])].filter((r) => r !== undefined).join(' '));
    // The kind the source cannot make is left out; the remaining one says why it is alone.
    const other = refusals.linked ?? refusals.full;
    if (options.length === 1 && other !== undefined && options[0] !== undefined) options[0].detail = `${options[0].detail} ${other}`;
    // Full first: both are offered only for the current state, whose linked clone leaves an external snapshot on
    // the source that libvirt 9.0 can neither revert to nor delete (the library's linked clone leaves nothing).
    options.reverse();
    const picked = await ctx.ask.pick(options, { title: vscode.l10n.t('Clone {0}', what), placeHolder: vscode.l10n.t('Linked or full clone?') });
    if (!picked) return undefined;
    kind = picked.value;
  }
  const refused = refusals[kind];
  if (refused !== undefined) throw unsupported(`${kind} clone`, refused);

  const read = ctx.tree.libvirt.result(domain.uri);
  const taken = read?.ok === true ? read.domains.map((d) => d.machine.name) : [m.name];
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Clone {0}', what),
      prompt: vscode.l10n.t('Name of the new domain'),
      // Domain names without spaces: virsh and virt-manager users type them.
      value: uniqueName(`${m.name}-${kind === 'linked' ? 'linked' : 'clone'}`, taken),
      validateInput: (v) => domainNameProblem(v, taken),
    }));
  if (name === undefined) return undefined;

  const options = { kind, ...(from === null ? {} : { from: from.name }) };
  try {
    const result =
      kind === 'full'
        ? await withProgress(vscode.l10n.t('Full clone of {0}', what), (p) => source.clone(m.uuid, name, { ...options, ...p }))
        : await source.clone(m.uuid, name, options);
    if (result.takenSnapshot !== null) {
      void vscode.window.showInformationMessage(
        vscode.l10n.t('libvirt took the external snapshot “{0}” of “{1}” first: the linked clone “{2}” reads its frozen files.', result.takenSnapshot.name, m.name, result.machine.name),
      );
    }
    ctx.tree.libvirt.reload(domain.uri);
    // The connection read again first: the selection's few tries within seconds then find the new row at once.
    await ctx.tree.libvirt.read(domain.uri);
    await ctx.select(() => libvirtRowOf(ctx, domain.uri, result.machine.uuid));
    return result;
  } catch (e) {
    // A refusal after a change (a linked clone's snapshot) or none: the rows say what libvirt now holds.
    ctx.tree.libvirt.reload(domain.uri);
    throw e;
  }
}

/** The input box's check: libvirt's rules for a name (as the engine checks them), and one in use is refused. */
function domainNameProblem(value: string, taken: readonly string[]): string | undefined {
  const name = value.trim();
  if (name === '') return vscode.l10n.t('Give the new domain a name.');
  if (name.includes('/')) return vscode.l10n.t('libvirt does not allow a slash in a name.');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/u.test(name)) return vscode.l10n.t('Remove the control character (such as a tab).');
  if (name.length > 128) return vscode.l10n.t('Shorten the name to 128 characters at most.');
  if (taken.includes(name)) return vscode.l10n.t('libvirt has a domain “{0}” here: choose another name.', name);
  return undefined;
}

/** The new domain's row, once its connection's rows are read again. */
async function libvirtRowOf(ctx: CommandContext, uri: string, uuid: string): Promise<LibvirtDomainNode | undefined> {
  const root = connectionNodes(ctx.tree.libvirt).find((n) => n.uri === uri);
  if (root === undefined) return undefined;
  return (await libvirtChildren(ctx.tree.libvirt, root)).find((n): n is LibvirtDomainNode => n.row === 'domain' && n.view.machine.uuid === uuid);
}
