// `vmsnap vm list`: the machines of the library, one row each.
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatTable } from '../table';
import { formatDate, openLibrary, shortId } from './shared';

export const vmListCommand: Command<CliContext> = {
  name: 'list',
  summary: 'list the machines of the library',
  args: [],
  flags: [],
  examples: ['vmsnap vm list', 'vmsnap --library ~/vms vm list --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const machines = await lib.list();
    const broken = await lib.broken();
    emit(ctx, machines, () => {
      if (machines.length === 0 && broken.length === 0) return `No machines in ${lib.dir} yet: create one with \`vmsnap vm create NAME\`.`;
      const name = (id: string): string => machines.find((m) => m.id === id)?.name ?? shortId(id);
      const table = formatTable(
        [{ header: 'NAME' }, { header: 'ID' }, { header: 'POWER' }, { header: 'SNAPSHOTS', align: 'right' }, { header: 'CLONE OF' }, { header: 'MAC' }, { header: 'CREATED' }],
        machines.map((m) => [
          m.name,
          shortId(m.id),
          m.powerState,
          String(m.snapshotCount),
          m.clonedFrom ? `${name(m.clonedFrom.machineId)} (${m.clonedFrom.kind})` : '-',
          m.macAddress,
          formatDate(m.createdAt),
        ]),
      );
      // A machine whose manifest cannot be read is still worth a line: the user has to fix or remove it.
      const warnings = broken.map((b) => `Unreadable machine folder ${b.folder}: ${b.message}`);
      return [table, ...warnings].join('\n');
    });
    return 0;
  },
};
