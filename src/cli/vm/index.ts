// `vmsnap vm ...`: the machines of the library.
import type { CommandGroup } from '../args';
import type { CliContext } from '../output';
import { vmCreateCommand } from './create';
import { vmDeleteCommand } from './delete';
import { vmDiskCommand } from './disk';
import { vmEditCommand } from './edit';
import { vmExportCommand } from './export';
import { vmImportCommand } from './import';
import { vmListCommand } from './list';
import { vmConsoleCommand, vmPauseCommand, vmResumeCommand, vmStartCommand, vmStatusCommand, vmStopCommand } from './power';
import { vmPromoteCommand } from './promote';
import { vmRenameCommand } from './rename';
import { vmScreenshotCommand } from './screenshot';
import { vmShowCommand } from './show';
import { vmSshCommand, vmSshConfigCommand } from './ssh';

export const vmVerb: CommandGroup<CliContext> = {
  name: 'vm',
  summary: 'create, import, list, show, start, stop, ssh into, screenshot, edit, rename, promote, export and delete machines',
  commands: [vmCreateCommand, vmImportCommand, vmListCommand, vmShowCommand, vmDiskCommand, vmStartCommand, vmStopCommand, vmPauseCommand, vmResumeCommand, vmStatusCommand, vmConsoleCommand, vmScreenshotCommand, vmSshCommand, vmSshConfigCommand, vmEditCommand, vmRenameCommand, vmPromoteCommand, vmExportCommand, vmDeleteCommand],
};
