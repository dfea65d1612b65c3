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
import { fitsOneLine, inOneVirsh } from './virsh-session';
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
  /** Per domain ref, the commands that followed its first ones at its last read (see readDomains). */
  private readonly followUps = new Map<string, string[][]>();

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
   * The domains, then (withSnapshots) each one's snapshots: their names are known only after the first commands.
   * The commands that followed the last read of the same domains (each snapshot's XML, a remote disk's pool) go into
   * the same virsh line as the first ones, so that a read whose snapshots did not change costs one virsh process;
   * only answers to this read's own questions are used, and what is new is asked in a second round.
   */
  private async readDomains(refs: readonly string[], withSnapshots: boolean): Promise<DomainView[]> {
    const first = refs.flatMap((r) => [
      ['dumpxml', '--domain', r, '--xpath', DOMAIN_XPATH, '--wrap'],
      ['domstate', '--domain', r],
      ['snapshot-current', '--domain', r, '--name'],
      ['snapshot-list', '--domain', r, '--name'],
    ]);
    if (!withSnapshots || !fitsOneLine(first)) return this.domainViews(refs, await this.virsh.batch(first, { timeoutMs: 30000 }), null);
    const ahead = unique(refs.flatMap((r) => this.followUps.get(r) ?? []));
    if (ahead.length > 0) {
      const out = await this.readMany([...first, ...ahead]);
      const answered = new Map(ahead.map((c, i) => [c.join('\0'), out[first.length + i] ?? null]));
      return this.domainViews(refs, out.slice(0, first.length), async (commands) => {
        const rest = commands.filter((c) => !answered.has(c.join('\0')));
        const more = rest.length === 0 ? [] : await this.readMany(rest);
        rest.forEach((c, i) => answered.set(c.join('\0'), more[i] ?? null));
        return commands.map((c) => answered.get(c.join('\0')) ?? null);
      });
    }
    // Over SSH both rounds go to one virsh fed on its input: one login instead of two. Locally that pays only for a
    // few commands (one domain's): virsh reading its input answers each ~1 ms slower, and a process start is ~20 ms.
    const few = (n: number): boolean => !this.isLocal || n < 25;
    if (!few(first.length)) return this.domainViews(refs, await this.virsh.batch(first, { timeoutMs: 30000 }), (commands) => this.readMany(commands));
    return inOneVirsh(this.virsh, async (round) => this.domainViews(refs, await round(first), (commands) => (few(commands.length) && fitsOneLine(commands) ? round(commands) : this.readMany(commands))), { timeoutMs: 30000 });
  }

  /** The views from the first round's answers (four per ref); `dump` asks the commands that follow (null: none). */
  private async domainViews(refs: readonly string[], out: readonly (string | null)[], dump: ((commands: string[][]) => Promise<(string | null)[]>) | null): Promise<DomainView[]> {
    const found: { ref: string; domain: DomainRecord; state: PowerState; current: string | null; names: string[]; followUps: string[][] }[] = [];
    refs.forEach((ref, i) => {
      const xml = out[i * 4];
      if (xml === null || xml === undefined) return; // gone meanwhile, or no such domain
      const names = (out[i * 4 + 3] ?? '').split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const domain = domainRecord(rootOf(parseOrdered(xml), 'nodes'));
      const dumps = names.map((n) => ['snapshot-dumpxml', '--domain', ref, '--snapshotname', n, '--xpath', SNAPSHOT_XPATH, '--wrap']);
      // On a remote host libvirt copies a disk only inside a storage pool: which pool holds each disk, asked alongside.
      const pools = this.isLocal ? [] : domain.disks.flatMap((d) => (d.path === null ? [] : [['vol-pool', '--vol', d.path]]));
      found.push({ ref, domain, state: powerStateOf(out[i * 4 + 1] ?? ''), current: out[i * 4 + 2]?.trim() || null, names, followUps: [...dumps, ...pools] });
    });
    if (dump === null) {
      return found.map((f) => ({ machine: this.machineOf(f.domain, f.state, f.current, f.names.length), domain: f.domain, snapshots: [], cloneRefusals: {} }));
    }
    this.rememberFollowUps(refs, found);
    const commands = unique(found.flatMap((f) => f.followUps));
    const answers = new Map((await dump(commands)).map((a, i) => [(commands[i] as string[]).join('\0'), a]));
    const answer = (c: readonly string[]): string | null => answers.get(c.join('\0')) ?? null;
    return found.map((f) => {
      const snapshots = f.followUps.filter((c) => c[0] === 'snapshot-dumpxml').flatMap((c) => {
        const xml = answer(c);
        return xml === null ? [] : [this.snapshotOf(xml)];
      });
      const unpooled = f.followUps.find((c) => c[0] === 'vol-pool' && answer(c) === null)?.[2];
      const refusal = unpooled === undefined ? undefined : notInPool(unpooled, this.uri);
      return { machine: this.machineOf(f.domain, f.state, f.current, f.names.length), domain: f.domain, snapshots, cloneRefusals: refusal === undefined ? {} : { linked: refusal, full: refusal } };
    });
  }

  /** What the next read of these refs asks ahead; a ref that is gone is forgotten, and the memory stays small. */
  private rememberFollowUps(refs: readonly string[], found: readonly { ref: string; followUps: string[][] }[]): void {
    for (const r of refs) this.followUps.delete(r);
    if (this.followUps.size > 1000) this.followUps.clear();
    for (const f of found) this.followUps.set(f.ref, f.followUps);
  }

  private machineOf(domain: DomainRecord, state: PowerState, current: string | null, snapshotCount: number): SourceMachine {
    return {
      sourceId: this.id,
      ref: domain.uuid,
      name: domain.name,
      uuid: domain.uuid,
      powerState: state,
      cpus: domain.cpus,
      memoryMiB: domain.memoryMiB,
      macAddresses: domain.macAddresses,
      snapshotCount,
      currentSnapshot: current,
    };
  }

  /**
   * Many read-only commands at once: on this computer many go to two virsh processes side by side (libvirtd answers
   * both at once; a third does not help on two cores), over SSH to one (each process is another SSH login).
   */
  private async readMany(commands: readonly string[][]): Promise<(string | null)[]> {
    if (!this.isLocal || commands.length < 100) return this.virsh.batch(commands, { timeoutMs: 30000 });
    const half = Math.ceil(commands.length / 2);
    const parts = await Promise.all([commands.slice(0, half), commands.slice(half)].map((c) => this.virsh.batch(c, { timeoutMs: 30000 })));
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

/** The commands without repeats (two domains on one disk ask for its pool once). */
function unique(commands: readonly string[][]): string[][] {
  return [...new Map(commands.map((c) => [c.join('\0'), c])).values()];
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

