// Every verb of `vmsnap`, in the order help lists them. Adding a verb is one line here.
import type { Verb } from './args';
import { imageVerb } from './image';
import type { CliContext } from './output';

export const verbs: Verb<CliContext>[] = [imageVerb];
