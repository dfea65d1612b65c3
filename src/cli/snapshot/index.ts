// `vmsnap snapshot ...`: a machine's snapshot tree.
import type { CommandGroup } from '../args';
import type { CliContext } from '../output';
import { snapshotDeleteCommand } from './delete';
import { snapshotEditCommand } from './edit';
import { snapshotListCommand } from './list';
import { snapshotRevertCommand } from './revert';
import { snapshotTakeCommand } from './take';

export const snapshotVerb: CommandGroup<CliContext> = {
  name: 'snapshot',
  summary: 'take, list, revert to, edit and delete a machine\'s snapshots',
  commands: [snapshotTakeCommand, snapshotListCommand, snapshotRevertCommand, snapshotEditCommand, snapshotDeleteCommand],
};
