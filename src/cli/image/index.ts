// `vmsnap image ...`: qcow2 images on their own, the counterpart of qemu-img and qemu-io.
import type { CommandGroup } from '../args';
import type { CliContext } from '../output';
import { imageCheckCommand } from './check';
import { imageCommitCommand } from './commit';
import { imageCompareCommand } from './compare';
import { imageConvertCommand } from './convert';
import { imageCreateCommand } from './create';
import { imageInfoCommand } from './info';
import { imageMapCommand } from './map';
import { imageReadCommand } from './read';
import { imageRebaseCommand } from './rebase';
import { imageSnapshotsCommand } from './snapshots';
import { imageWriteCommand } from './write';

export const imageVerb: CommandGroup<CliContext> = {
  name: 'image',
  summary: 'create, inspect, check and transform qcow2 disk images',
  commands: [
    imageCreateCommand,
    imageInfoCommand,
    imageMapCommand,
    imageCheckCommand,
    imageSnapshotsCommand,
    imageWriteCommand,
    imageReadCommand,
    imageConvertCommand,
    imageCommitCommand,
    imageRebaseCommand,
    imageCompareCommand,
  ],
};
