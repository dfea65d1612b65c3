// libvirt as a machine source (local and remote connections, through virsh), and exporting our machines to it.
export { LibvirtSource, displayUri, snapshotTreeOf, treeOf, type DomainView } from './libvirt-source';
export { Virsh, quote, virshError, type VirshOptions } from './virsh';
export { notInPool, parseDomain, parseSnapshot, REMOTE_FULL_FROM_SNAPSHOT, REVERT_EXTERNAL, RENAME_REASON } from './records';
export { domainXmlOf, exportMachine, type ExportedDomain } from './export';
export { findExportedDomain, undefineDomain, type ExportedDomainState } from './exported';
