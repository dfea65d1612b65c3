// Every verb of `vmsnap`, in the order help lists them. Adding a verb is one line here.
import type { Verb } from './args';
import { autoVerb } from './auto';
import { checkpointCommand } from './checkpoint';
import { cloneCommand } from './clone';
import { compareCommand } from './compare';
import { diffCommand } from './diff';
import { imageVerb } from './image';
import type { CliContext } from './output';
import { snapshotVerb } from './snapshot';
import { vmVerb } from './vm';

export const verbs: Verb<CliContext>[] = [vmVerb, snapshotVerb, checkpointCommand, autoVerb, cloneCommand, compareCommand, diffCommand, imageVerb];
