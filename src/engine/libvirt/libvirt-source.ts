// libvirt as a machine source: the domains of one connection (qemu:///system, qemu+ssh://user@host/system, ...)
// read and changed through `virsh`, never by touching libvirt's files. Snapshots are libvirt's own (internal
// qcow2 snapshots, with memory when the domain runs); the tree comes from libvirt's parent links.
import { capabilitiesWithout, isSourceError, SourceError, unsupported } from '../sources';
import type {
  MachineSource,
  PowerAction,
  PowerState,
  SourceCloneOptions,
  SourceCloneResult,
  SourceMachine,
  SourceMachineDetails,
  SourceRevertOptions,
  SourceRevertResult,
  SourceSnapshot,
  SourceSnapshotNode,
  SourceSnapshotTree,
  SourceStopOptions,
  SourceStopResult,
  TakeOptions,
} from '../sources';
import { cloneDomain } from './clone';
import { domainRecord, notInPool, powerStateOf, RENAME_REASON, snapshotRecord, type DomainRecord } from './records';
import { Virsh, type VirshOptions } from './virsh';
import { fitsOneLine, inOneVirsh, type Round } from './virsh-session';
import { appendElement, buildOrdered, element, parseOrdered, path, rootOf, setText } from './xml';

const CAPABILITIES = capabilitiesWithout('promote', 'renameSnapshot', 'diff', 'sizes');

/** The elements of a domain a listing needs (--wrap puts them under one <nodes>). */
const DOMAIN_XPATH = '/domain/name|/domain/uuid|/domain/memory|/domain/vcpu|/domain/devices/interface|/domain/devices/disk';
/** A snapshot without the domain it embeds (its largest part). */
const SNAPSHOT_XPATH = '/domainsnapshot/*[not(self::domain or self::inactiveDomain or self::cookie)]';

/** One domain as read in one batch: its record, state, current snapshot and snapshots. */
export interface DomainView {
  machine: SourceMachine;
  domain: DomainRecord;
  snapshots: SourceSnapshot[];
  /**
   * Why a clone of the domain's current state is refused whatever the snapshots (a remote disk in no storage
   * pool); empty when it is not, or when the snapshots were not read.
   */
  cloneRefusals: { linked?: string; full?: string };
}

export class LibvirtSource implements MachineSource {
  readonly kind = 'libvirt';
  readonly id: string;
  readonly label: string;
  readonly capabilities = CAPABILITIES;
  readonly virsh: Virsh;

  constructor(
    readonly uri: string,
    options: VirshOptions = {},
  ) {
    this.id = uri;
    this.label = `libvirt — ${displayUri(uri)}`;
    this.virsh = new Virsh(uri, options);
  }

  /** True when the connection's disks are files on this computer (a local URI): the engine may copy them. */
  get isLocal(): boolean {
    const m = /^[a-z0-9]+(?:\+([a-z0-9]+))?:\/\/([^/?]*)/i.exec(this.uri);
    return m !== null && (m[1] === undefined || m[1] === 'unix') && (m[2] === '' || m[2] === 'localhost');
  }

  // ---------------------------------------------------------------- reading

  async listMachines(): Promise<SourceMachine[]> {
    return (await this.readDomains(await this.domainUuids(), false)).map((v) => v.machine);
  }

  /** Every domain with its snapshots, in three virsh calls whatever their number (what a tree shows at once). */
  async readAll(): Promise<DomainView[]> {
    return this.readDomains(await this.domainUuids(), true);
  }

  async showMachine(ref: string): Promise<SourceMachineDetails> {
    const v = await this.view(ref);
    return { ...v.machine, disks: v.domain.disks, snapshots: v.snapshots };
  }

  async snapshotTree(ref: string): Promise<SourceSnapshotTree> {
    const v = await this.view(ref);
    return treeOf(v);
  }

  // ---------------------------------------------------------------- snapshots

  /** snapshot-create-as (libvirt refuses a name in use) and its XML in one virsh call: it costs what virsh does. */
  async takeSnapshot(ref: string, name: string, options: TakeOptions = {}): Promise<SourceSnapshot> {
    const snapName = validName(name, 'snapshot name');
    if (options.diskOnly === true && powerStateOf(await this.virsh.run(['domstate', '--domain', ref])) !== 'off') {
      throw unsupported('take', 'libvirt 9.0 takes a disk-only snapshot of a running domain only as an external snapshot, which it cannot revert to: take it with its memory, or power the domain off.');
    }
    const description = options.description === undefined ? [] : ['--description', options.description];
    // The snapshot and the read of what libvirt made, in one virsh process.
    const [, xml] = await this.virsh
      .sequence(
        [
          ['snapshot-create-as', '--domain', ref, '--name', snapName, ...description],
          ['snapshot-dumpxml', '--domain', ref, '--snapshotname', snapName, '--xpath', SNAPSHOT_XPATH, '--wrap'],
        ],
        { timeoutMs: 10 * 60000 },
      )
      .catch((e: unknown) => {
        throw isSourceError(e) && e.code === 'ALREADY_EXISTS' ? new SourceError('ALREADY_EXISTS', `Domain "${ref}" already has a snapshot "${snapName}": libvirt names are unique, choose another.`) : e;
      });
    return this.snapshotOf(xml ?? '');
  }

  async revert(ref: string, snapshotRef: string, options: SourceRevertOptions = {}): Promise<SourceRevertResult> {
    const target = await this.snapshot(ref, snapshotRef).catch((e: unknown) => {
      throw isSourceError(e) && e.code === 'NOT_FOUND' && /snapshot/.test(e.message)
        ? new SourceError('NOT_FOUND', `Domain "${ref}" has no snapshot "${snapshotRef}".`, { detail: { kind: 'snapshot-not-found', machineName: ref, ref: snapshotRef } })
        : e;
    });
    if (target.refusals.revert !== undefined) throw unsupported('revert', target.refusals.revert);
    if (options.discardCurrent !== true && options.saveCurrentAs === undefined) {
      throw new SourceError('NEEDS_CONFIRMATION', 'Reverting throws away the current state: confirm that it may be discarded, or save it as a snapshot first.', { detail: { kind: 'revert-discards-current' } });
    }
    const saved = options.saveCurrentAs === undefined ? null : await this.takeSnapshot(ref, options.saveCurrentAs);
    await this.virsh.run(['snapshot-revert', '--domain', ref, '--snapshotname', target.name], { timeoutMs: 10 * 60000 });
    const state = powerStateOf(await this.virsh.run(['domstate', '--domain', ref]));
    return { snapshot: target, saved, powerState: state };
  }

  async deleteSnapshot(ref: string, snapshotRef: string, options: { children?: boolean } = {}): Promise<string[]> {
    const v = await this.view(ref);
    const target = findSnapshot(v, snapshotRef);
    const doomed = options.children === true ? subtree(v.snapshots, target.id) : [target];
    for (const s of doomed) if (s.refusals.delete !== undefined) throw unsupported('delete', `Snapshot "${s.name}": ${s.refusals.delete}`);
    await this.virsh.run(['snapshot-delete', '--domain', v.machine.uuid, '--snapshotname', target.name, ...(options.children === true ? ['--children'] : [])], { timeoutMs: 10 * 60000 });
    return doomed.map((s) => s.id);
  }

  /** The description changes by redefining the snapshot's XML (libvirt's own way); a new name is refused. */
  async editSnapshot(ref: string, snapshotRef: string, changes: { name?: string; description?: string }): Promise<SourceSnapshot> {
    const v = await this.view(ref);
    const target = findSnapshot(v, snapshotRef);
    if (changes.name !== undefined && changes.name !== target.name) throw unsupported('rename', RENAME_REASON);
    if (changes.description === undefined || changes.description === target.description) return target;
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/u.test(changes.description)) throw new SourceError('INVALID_NAME', 'The description contains a control character: remove it.');
    const nodes = parseOrdered(await this.virsh.run(['snapshot-dumpxml', '--domain', v.machine.uuid, '--snapshotname', target.name, '--security-info']));
    const root = rootOf(nodes, 'domainsnapshot');
    const description = path(root, 'description');
    if (description !== null) setText(description, changes.description);
    else appendElement(root, element('description', {}, changes.description));
    const isCurrent = v.machine.currentSnapshot === target.id;
    await this.virsh.runWithDocument((file) => ['snapshot-create', '--domain', v.machine.uuid, '--xmlfile', file, '--redefine', ...(isCurrent ? ['--current'] : [])], buildOrdered(nodes));
    return this.snapshot(v.machine.uuid, target.name);
  }

  // ---------------------------------------------------------------- clones and power

  async clone(ref: string, newName: string, options: SourceCloneOptions): Promise<SourceCloneResult> {
    const v = await this.view(ref);
    const name = validName(newName, 'machine name');
    const from = options.from === undefined ? null : findSnapshot(v, options.from);
    const r = await cloneDomain(this, v, name, options.kind, from, options);
    return { machine: await this.showMachine(r.uuid), takenSnapshot: r.takenSnapshot };
  }

  async power(ref: string, action: PowerAction): Promise<PowerState> {
    const v = await this.view(ref, false);
    const uuid = v.machine.uuid;
    const state = v.machine.powerState;
    switch (action) {
      case 'start':
        if (state !== 'off') throw new SourceError('FAILED', `Domain "${v.machine.name}" is already ${state}.`);
        await this.virsh.run(['start', uuid]);
        break;
      case 'stop':
      case 'force-off':
        await this.stop(uuid, { force: action === 'force-off' });
        break;
      case 'pause':
        if (state !== 'running') throw new SourceError('NOT_RUNNING', `Domain "${v.machine.name}" is ${state}: only a running domain can be paused.`);
        await this.virsh.run(['suspend', uuid]);
        break;
      case 'resume':
        if (state !== 'paused') throw new SourceError('NOT_RUNNING', `Domain "${v.machine.name}" is ${state}, not paused.`);
        await this.virsh.run(['resume', uuid]);
        break;
    }
    return powerStateOf(await this.virsh.run(['domstate', uuid]));
  }

  /**
   * As our own machines stop: `virsh shutdown` (libvirt asks the guest through ACPI, or its agent) and up to
   * `timeoutMs` for it to power off, then `virsh destroy`; force: destroy at once. A paused domain is resumed
   * first, so that its guest can see the request.
   */
  async stop(ref: string, options: SourceStopOptions = {}): Promise<SourceStopResult> {
    const t0 = Date.now();
    const v = await this.view(ref, false);
    const uuid = v.machine.uuid;
    const result = (method: SourceStopResult['method'], timedOut = false): SourceStopResult => ({ method, timedOut, ms: Date.now() - t0 });
    if (v.machine.powerState === 'off') return result('already-off');
    if (options.force !== true) {
      if (v.machine.powerState === 'paused') await this.virsh.run(['resume', uuid]);
      await this.virsh.run(['shutdown', uuid]);
      if (await this.waitForOff(uuid, options.timeoutMs ?? 60000)) return result('shutdown');
    }
    // The guest may power off between the last look and destroy, which then finds the domain not running.
    await this.virsh.run(['destroy', uuid]).catch(async (e: unknown) => {
      if (powerStateOf(await this.virsh.run(['domstate', uuid])) !== 'off') throw e;
    });
    return result('forced', options.force !== true);
  }

  // ---------------------------------------------------------------- internals

  /** One domain (by UUID, name or id) with its snapshots (none read without `withSnapshots`). */
  async view(ref: string, withSnapshots = true): Promise<DomainView> {
    const [v] = await this.readDomains([ref], withSnapshots);
    if (v === undefined) {
      throw new SourceError('NOT_FOUND', `libvirt at ${this.uri} has no domain "${ref}".`, { detail: { kind: 'machine-not-found', source: this.uri, ref } });
    }
    return v;
  }

  async snapshot(uuid: string, name: string): Promise<SourceSnapshot> {
    return this.snapshotOf(await this.virsh.run(['snapshot-dumpxml', '--domain', uuid, '--snapshotname', name, '--xpath', SNAPSHOT_XPATH, '--wrap']));
  }

  /** A snapshot's record, with what this connection refuses for it (a remote one: a full clone from it). */
  private snapshotOf(wrappedXml: string): SourceSnapshot {
    return snapshotRecord(rootOf(parseOrdered(wrappedXml), 'nodes'), this.isLocal ? 'local' : 'remote');
  }

  private async domainUuids(): Promise<string[]> {
    return (await this.virsh.run(['list', '--all', '--uuid'], { timeoutMs: 30000 }))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  }

  /**
   * The domains, then (withSnapshots) each one's snapshots, in one virsh process fed both rounds on its input: the
   * snapshots' names are known only after the first.
   */
  private async readDomains(refs: readonly string[], withSnapshots: boolean): Promise<DomainView[]> {
    const first = refs.flatMap((r) => [
      ['dumpxml', '--domain', r, '--xpath', DOMAIN_XPATH, '--wrap'],
      ['domstate', '--domain', r],
      ['snapshot-current', '--domain', r, '--name'],
      ['snapshot-list', '--domain', r, '--name'],
    ]);
    if (!withSnapshots || !fitsOneLine(first)) return this.domainViews(refs, await this.virsh.batch(first, { timeoutMs: 30000 }), null);
    return inOneVirsh(
      this.virsh,
      async (round) => {
        const out = await round(first);
        return this.domainViews(refs, out, (commands) => this.dumpSnapshots(commands, round));
      },
      { timeoutMs: 30000 },
    );
  }

  /** The views from the first round's answers (four per ref); `dump` reads the snapshots' XML (null: none read). */
  private async domainViews(refs: readonly string[], out: readonly (string | null)[], dump: ((commands: string[][]) => Promise<(string | null)[]>) | null): Promise<DomainView[]> {
    const withSnapshots = dump !== null;
    const found: { domain: DomainRecord; state: PowerState; current: string | null; names: string[] }[] = [];
    refs.forEach((_, i) => {
      const xml = out[i * 4];
      if (xml === null || xml === undefined) return; // gone meanwhile, or no such domain
      const names = (out[i * 4 + 3] ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
      found.push({ domain: domainRecord(rootOf(parseOrdered(xml), 'nodes')), state: powerStateOf(out[i * 4 + 1] ?? ''), current: out[i * 4 + 2]?.trim() || null, names });
    });
    const dumpCommands = found.flatMap((f) => f.names.map((n) => ['snapshot-dumpxml', '--domain', f.domain.uuid, '--snapshotname', n, '--xpath', SNAPSHOT_XPATH, '--wrap']));
    // On a remote host libvirt copies a disk only inside a storage pool: which pool holds each disk, in the same round.
    const remoteDisks = dump === null || this.isLocal ? [] : [...new Set(found.flatMap((f) => f.domain.disks.flatMap((d) => (d.path === null ? [] : [d.path]))))];
    const answers = dump === null ? [] : await dump([...dumpCommands, ...remoteDisks.map((file) => ['vol-pool', '--vol', file])]);
    const dumps = answers.slice(0, dumpCommands.length);
    const pooled = new Set(remoteDisks.filter((_, i) => answers[dumpCommands.length + i] !== null));
    let k = 0;
    return found.map((f) => {
      const snapshots: SourceSnapshot[] = [];
      if (withSnapshots) {
        for (let j = 0; j < f.names.length; j++, k++) {
          const xml = dumps[k];
          if (xml !== null && xml !== undefined) snapshots.push(this.snapshotOf(xml));
        }
      }
      const machine: SourceMachine = {
        sourceId: this.id,
        ref: f.domain.uuid,
        name: f.domain.name,
        uuid: f.domain.uuid,
        powerState: f.state,
        cpus: f.domain.cpus,
        memoryMiB: f.domain.memoryMiB,
        macAddresses: f.domain.macAddresses,
        snapshotCount: f.names.length,
        currentSnapshot: f.current,
      };
      const unpooled = f.domain.disks.find((d) => d.path !== null && remoteDisks.includes(d.path) && !pooled.has(d.path));
      const refusal = unpooled === undefined ? undefined : notInPool(unpooled.path as string, this.uri);
      return { machine, domain: f.domain, snapshots, cloneRefusals: refusal === undefined ? {} : { linked: refusal, full: refusal } };
    });
  }

  /**
   * Many snapshot reads at once, in the read's own virsh (`round`); on this computer a second virsh answers half of
   * many side by side (libvirtd answers both at once; a third does not help on two cores), over SSH none (each
   * process is another SSH login).
   */
  private async dumpSnapshots(commands: readonly string[][], round: Round): Promise<(string | null)[]> {
    if (!fitsOneLine(commands)) return this.virsh.batch(commands, { timeoutMs: 30000 });
    if (!this.isLocal || commands.length < 100) return round(commands);
    const half = Math.ceil(commands.length / 2);
    const parts = await Promise.all([round(commands.slice(0, half)), this.virsh.batch(commands.slice(half), { timeoutMs: 30000 })]);
    return parts.flat();
  }

  private async waitForOff(uuid: string, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (powerStateOf(await this.virsh.run(['domstate', uuid])) === 'off') return true;
      await new Promise((r) => setTimeout(r, 500));
    }
    return false;
  }
}

/** The snapshot tree from libvirt's parent links; "You are here" under libvirt's current snapshot. */
export function treeOf(v: DomainView): SourceSnapshotTree {
  return snapshotTreeOf(v.machine, v.snapshots);
}

/** A domain's snapshot tree from its snapshots' parent links, "You are here" under its current snapshot. */
export function snapshotTreeOf(machine: SourceMachine, snapshots: readonly SourceSnapshot[]): SourceSnapshotTree {
  const byParent = new Map<string | null, SourceSnapshot[]>();
  const ids = new Set(snapshots.map((s) => s.id));
  for (const s of snapshots) {
    const parent = s.parentId !== null && ids.has(s.parentId) ? s.parentId : null;
    byParent.set(parent, [...(byParent.get(parent) ?? []), s]);
  }
  const current = machine.currentSnapshot;
  const nodes = (parent: string | null): SourceSnapshotNode[] => {
    const children = (byParent.get(parent) ?? [])
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name))
      .map((s): SourceSnapshotNode => ({ kind: 'snapshot', id: s.id, snapshot: s, isCurrentParent: s.id === current, children: nodes(s.id) }));
    if (parent === (current !== null && ids.has(current) ? current : null)) children.push({ kind: 'current', id: 'current', snapshot: null, isCurrentParent: false, children: [] });
    return children;
  };
  return { machineRef: machine.uuid, machineName: machine.name, roots: nodes(null) };
}

function findSnapshot(v: DomainView, ref: string): SourceSnapshot {
  const s = v.snapshots.find((x) => x.id === ref || x.name === ref);
  if (s === undefined) {
    throw new SourceError('NOT_FOUND', `Domain "${v.machine.name}" has no snapshot "${ref}".`, { detail: { kind: 'snapshot-not-found', machineName: v.machine.name, ref } });
  }
  return s;
}

/** The snapshot and everything below it, children first (the order libvirt deletes them in). */
function subtree(all: readonly SourceSnapshot[], id: string): SourceSnapshot[] {
  const out: SourceSnapshot[] = [];
  const visit = (x: string): void => {
    for (const c of all.filter((s) => s.parentId === x)) visit(c.id);
    const self = all.find((s) => s.id === x);
    if (self) out.push(self);
  };
  visit(id);
  return out;
}

function validName(raw: string, what: string): string {
  const name = raw.trim();
  if (name === '') throw new SourceError('INVALID_NAME', `The ${what} is empty: give it a name.`);
  if (name.includes('/')) throw new SourceError('INVALID_NAME', `The ${what} "${name}" contains a slash, which libvirt does not allow: remove it.`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/u.test(name)) throw new SourceError('INVALID_NAME', `The ${what} contains a control character (such as a newline or tab): remove it.`);
  if (name.length > 128) throw new SourceError('INVALID_NAME', `The ${what} is longer than 128 characters: shorten it.`);
  return name;
}

/** "server" for qemu+ssh://me@server/system, the URI itself for a local one (as the tree's root label). */
export function displayUri(uri: string): string {
  const m = /^[a-z0-9]+\+ssh:\/\/(?:[^@/]+@)?([^/:?]+)/.exec(uri);
  return m?.[1] ?? uri;
}

