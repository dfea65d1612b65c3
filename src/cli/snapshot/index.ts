// `vmsnap snapshot ...`: a machine's snapshot tree.
import type { CommandGroup } from '../args';
import type { CliContext } from '../output';
import { snapshotDeleteCommand } from './delete';
import { snapshotEditCommand } from './edit';
import { snapshotListCommand } from './list';
import { snapshotRevertCommand } from './revert';
import { snapshotShowCommand } from './show';
import { snapshotTakeCommand } from './take';

export const snapshotVerb: CommandGroup<CliContext> = {
  name: 'snapshot',
  summary: 'take, list, show, revert to, edit and delete a machine\'s snapshots',
  commands: [snapshotTakeCommand, snapshotListCommand, snapshotShowCommand, snapshotRevertCommand, snapshotEditCommand, snapshotDeleteCommand],
};
