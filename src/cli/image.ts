// `vmsnap image ...`: qcow2 images on their own, the counterpart of qemu-img and qemu-io.
import type { CommandGroup } from './args';
import { checkCommand } from './image/check';
import { commitCommand } from './image/commit';
import { compareCommand } from './image/compare';
import { convertCommand } from './image/convert';
import { createCommand } from './image/create';
import { infoCommand } from './image/info';
import { mapCommand } from './image/map';
import { readCommand } from './image/read';
import { rebaseCommand } from './image/rebase';
import { snapshotsCommand } from './image/snapshots';
import { writeCommand } from './image/write';
import type { CliContext } from './output';

export const imageVerb: CommandGroup<CliContext> = {
  name: 'image',
  summary: 'create, inspect, check and transform qcow2 disk images',
  commands: [
    createCommand,
    infoCommand,
    mapCommand,
    checkCommand,
    snapshotsCommand,
    writeCommand,
    readCommand,
    convertCommand,
    commitCommand,
    rebaseCommand,
    compareCommand,
  ],
};
