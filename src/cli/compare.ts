// `vmsnap compare`: the snapshots-vs-clones table of a machine's family (machine, snapshots, clones), measured.
import type { CompareDependency, CompareRow } from '../engine/machine';
import type { Command } from './args';
import { emit, type CliContext } from './output';
import { formatTable } from './table';
import { formatSize } from './units';
import { formatDate, openLibrary, VM_ARG } from './vm/shared';

export const compareCommand: Command<CliContext> = {
  name: 'compare',
  summary: 'compare a machine\'s family: the machine, its snapshots, its clones and theirs, side by side',
  description: 'Starts from the original machine (following clones back to their source). Names are indented by depth.',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap compare dev', 'vmsnap compare dev --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const rows = (await lib.compare(inv.required('VM'))).map(compareTableRow);
    emit(ctx, rows, () =>
      formatTable(
        [
          { header: 'KIND' },
          { header: 'NAME' },
          { header: 'CREATED' },
          { header: 'SIZE ON DISK', align: 'right' },
          { header: 'DEPENDS ON' },
          { header: 'RUNS ALONGSIDE SOURCE' },
          { header: 'UUID' },
          { header: 'MAC' },
          { header: 'DESCRIPTION' },
        ],
        rows.map((r) => [
          r.kind,
          `${'  '.repeat(r.depth)}${r.name}`,
          formatDate(r.createdAt),
          formatSize(r.sizeBytes),
          r.dependsOn,
          r.canRunAlongsideSource ? 'yes' : 'no',
          r.uuid,
          r.macAddress,
          r.description.replace(/\s*\n\s*/g, ' '),
        ]),
      ),
    );
    return 0;
  },
};

/** A comparison row as the CLI prints it (also with --json): its kind and what it depends on in words. */
export interface CompareTableRow extends Omit<CompareRow, 'kind' | 'dependsOn'> {
  kind: 'machine' | 'snapshot' | 'linked clone' | 'full clone';
  /** "snapshot X of Y", "machine Y" or "nothing". */
  dependsOn: string;
}

export function compareTableRow(r: CompareRow): CompareTableRow {
  const kind = r.kind === 'linked' ? 'linked clone' : r.kind === 'full' ? 'full clone' : r.kind;
  return { ...r, kind, dependsOn: dependencyWords(r.dependsOn) };
}

function dependencyWords(d: CompareDependency): string {
  switch (d.kind) {
    case 'nothing':
      return 'nothing';
    case 'machine':
      return `machine "${d.machineName}"`;
    case 'snapshot':
      return `snapshot "${d.snapshotName ?? d.snapshotId ?? '?'}" of "${d.machineName ?? d.machineId}"`;
  }
}
