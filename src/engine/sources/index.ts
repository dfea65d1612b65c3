// Machine sources: what the tree, the commands and the CLI talk to. Our library is one; libvirt is another.
export type * from './types';
export { CAPABILITY_NAMES, capabilitiesWithout } from './types';
export { SourceError, isSourceError, unsupported, type SourceErrorCode, type SourceErrorDetail } from './errors';
export { LibrarySource, LIBRARY_SOURCE_ID } from './library-source';
