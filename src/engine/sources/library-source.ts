// Our own library as a machine source: a thin adapter over Library, which keeps doing all the work (its errors
// stay MachineErrors, its behaviour is unchanged).
import type { Library } from '../machine';
import type { MachineDetails, MachineSummary, SnapshotInfo, SnapshotTreeNode } from '../machine';
import type {
  MachineSource,
  PowerAction,
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
} from './types';
import type { OperationOptions } from '../operation';
import type { PowerState } from '../machine';
import { capabilitiesWithout } from './types';

export const LIBRARY_SOURCE_ID = 'library';

const LIBRARY_CAPABILITIES = capabilitiesWithout();

export class LibrarySource implements MachineSource {
  readonly id = LIBRARY_SOURCE_ID;
  readonly kind = 'library';
  readonly label: string;
  readonly capabilities = LIBRARY_CAPABILITIES;

  constructor(readonly library: Library) {
    this.label = `Library — ${library.dir}`;
  }

  async listMachines(): Promise<SourceMachine[]> {
    return (await this.library.list()).map((m) => machineOf(m, m.snapshotCount));
  }

  async showMachine(ref: string): Promise<SourceMachineDetails> {
    return detailsOf(await this.library.show(ref));
  }

  async snapshotTree(ref: string): Promise<SourceSnapshotTree> {
    const tree = await this.library.snapshotTree(ref);
    const node = (n: SnapshotTreeNode, parentId: string | null): SourceSnapshotNode => ({
      kind: n.kind,
      id: n.id,
      snapshot: n.kind === 'snapshot' ? snapshotOf({ ...n, parentId }) : null,
      isCurrentParent: n.isCurrentParent,
      children: n.children.map((c) => node(c, n.id)),
    });
    return { machineRef: tree.machineId, machineName: tree.machineName, roots: tree.roots.map((n) => node(n, null)) };
  }

  async takeSnapshot(ref: string, name: string, options: TakeOptions = {}): Promise<SourceSnapshot> {
    return snapshotOf(await this.library.takeSnapshot(ref, name, options));
  }

  async revert(ref: string, snapshot: string, options: SourceRevertOptions = {}): Promise<SourceRevertResult> {
    const r = await this.library.revert(ref, snapshot, options);
    return { snapshot: snapshotOf(r.snapshot), saved: r.saved === null ? null : snapshotOf(r.saved), powerState: r.poweredOn ? 'running' : (await this.library.show(ref)).powerState };
  }

  async deleteSnapshot(ref: string, snapshot: string, options: { children?: boolean } & OperationOptions = {}): Promise<string[]> {
    return (await this.library.deleteSnapshot(ref, snapshot, options)).deleted.map((d) => d.id);
  }

  async editSnapshot(ref: string, snapshot: string, changes: { name?: string; description?: string }): Promise<SourceSnapshot> {
    return snapshotOf(await this.library.editSnapshot(ref, snapshot, changes));
  }

  async clone(ref: string, newName: string, options: SourceCloneOptions): Promise<SourceCloneResult> {
    const r = await this.library.clone(ref, newName, options);
    return { machine: detailsOf(r.machine), takenSnapshot: r.takenSnapshot === null ? null : snapshotOf(r.takenSnapshot) };
  }

  async power(ref: string, action: PowerAction): Promise<PowerState> {
    switch (action) {
      case 'start':
        return (await this.library.startMachine(ref)).powerState;
      case 'stop':
      case 'force-off':
        await this.library.stopMachine(ref, { force: action === 'force-off' });
        return 'off';
      case 'pause':
        return (await this.library.pauseMachine(ref)).powerState;
      case 'resume':
        return (await this.library.resumeMachine(ref)).powerState;
    }
  }

  async stop(ref: string, options: SourceStopOptions = {}): Promise<SourceStopResult> {
    const force = options.force === true;
    const r = await this.library.stopMachine(ref, { force, ...(options.timeoutMs === undefined ? {} : { powerdownTimeoutMs: options.timeoutMs }) });
    if (r.method === 'already-off') return { method: 'already-off', timedOut: false, ms: r.ms };
    const shutdown = r.method === 'acpi' || r.method === 'agent';
    return { method: shutdown ? 'shutdown' : 'forced', timedOut: !shutdown && !force, ms: r.ms };
  }
}

function machineOf(m: Omit<MachineSummary, 'diskCount' | 'snapshotCount'>, snapshotCount: number): SourceMachine {
  return {
    sourceId: LIBRARY_SOURCE_ID,
    ref: m.id,
    name: m.name,
    uuid: m.id,
    powerState: m.powerState,
    cpus: m.cpus,
    memoryMiB: m.memoryMiB,
    macAddresses: [m.macAddress],
    snapshotCount,
    currentSnapshot: m.current,
  };
}

function detailsOf(d: MachineDetails): SourceMachineDetails {
  return {
    ...machineOf(d, d.snapshots.length),
    disks: d.disks.map((disk) => ({ target: String(disk.index), path: disk.path, format: 'qcow2' })),
    snapshots: d.snapshots.map(snapshotOf),
  };
}

function snapshotOf(s: Pick<SnapshotInfo, 'id' | 'name' | 'description' | 'parentId' | 'createdAt' | 'takenWhileRunning' | 'hasMemory' | 'lockedBy'>): SourceSnapshot {
  const locked = s.lockedBy.length > 0 ? `Linked clones hang on snapshot "${s.name}": delete or promote them first.` : undefined;
  return {
    id: s.id,
    name: s.name,
    description: s.description,
    parentId: s.parentId,
    createdAt: s.createdAt,
    takenWhileRunning: s.takenWhileRunning,
    hasMemory: s.hasMemory,
    location: 'external',
    refusals: locked === undefined ? {} : { delete: locked },
  };
}
