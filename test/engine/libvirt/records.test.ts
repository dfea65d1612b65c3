// libvirt's XML and virsh's errors read by the engine, on documents as libvirt 9.0 writes them (no daemon needed).
import { strict as assert } from 'node:assert';
import { cloneXml } from '../../../src/engine/libvirt/clone';
import { domainXmlOf, LibvirtSource, parseDomain, parseSnapshot, quote, REVERT_EXTERNAL, treeOf, virshError } from '../../../src/engine/libvirt';
import type { MachineDetails } from '../../../src/engine/machine';

const DOMAIN = `<domain type='qemu'>
  <name>web &amp; db</name>
  <uuid>fee74343-1282-4d36-94fa-35ac3f4d33ae</uuid>
  <memory unit='KiB'>65536</memory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vms/web &amp; db.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc' bus='ide'/></disk>
    <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>
    <serial type='file'><source path='/vms/web &amp; db-serial.log'/><target port='0'/></serial>
    <console type='file'><source path='/vms/web &amp; db-serial.log'/><target type='serial' port='0'/></console>
  </devices>
</domain>`;

const snapshot = (name: string, parent: string | null, extra = ''): string => `<domainsnapshot>
  <name>${name}</name>
  <description>about ${name}</description>
  <state>running</state>
  ${parent === null ? '' : `<parent><name>${parent}</name></parent>`}
  <creationTime>1796561933</creationTime>
  <memory snapshot='internal'/>
  <disks><disk name='vda' snapshot='internal'/></disks>${extra}
</domainsnapshot>`;

describe('libvirt records: domain and snapshot XML, virsh errors', () => {
  it('reads a domain: name with an entity, memory in MiB, cpus, MACs, disk files (not the CD-ROM)', () => {
    const d = parseDomain(DOMAIN);
    assert.deepEqual(d, {
      name: 'web & db',
      uuid: 'fee74343-1282-4d36-94fa-35ac3f4d33ae',
      memoryMiB: 64,
      cpus: 2,
      macAddresses: ['52:54:00:12:34:56'],
      disks: [{ target: 'vda', path: '/vms/web & db.qcow2', format: 'qcow2' }],
    });
  });

  it('reads snapshots: parent, description, time, memory; an external one refuses revert with libvirt 9.0\'s reason', () => {
    const s = parseSnapshot(snapshot('b', 'a'));
    assert.equal(s.parentId, 'a');
    assert.equal(s.description, 'about b');
    assert.equal(s.createdAt, new Date(1796561933 * 1000).toISOString());
    assert.equal(s.hasMemory, true);
    assert.equal(s.location, 'internal');
    assert.equal(s.refusals.revert, undefined);
    const ext = parseSnapshot(snapshot('e', null).replace("<memory snapshot='internal'/>", "<memory snapshot='no'/>").replace("snapshot='internal'/></disks>", "snapshot='external'/></disks>"));
    assert.equal(ext.location, 'external');
    assert.equal(ext.refusals.revert, REVERT_EXTERNAL);
  });

  it('builds the tree from parent links, "You are here" under the current snapshot', () => {
    const snaps = [parseSnapshot(snapshot('a', null)), parseSnapshot(snapshot('b', 'a')), parseSnapshot(snapshot('c', 'a'))];
    const tree = treeOf({ machine: { sourceId: 'x', ref: 'u', name: 'web', uuid: 'u', powerState: 'off', cpus: 1, memoryMiB: 1, macAddresses: [], snapshotCount: 3, currentSnapshot: 'b' }, domain: parseDomain(DOMAIN), snapshots: snaps, cloneRefusals: {} });
    const shape = (nodes: typeof tree.roots): string => nodes.map((n) => (n.children.length === 0 ? n.id : `${n.id}(${shape(n.children)})`)).join(',');
    assert.equal(shape(tree.roots), 'a(b(current),c)');
  });

  it('a clone\'s XML: new name, no UUID, a new MAC, the new disk, its own serial log, the rest kept', () => {
    const xml = cloneXml(DOMAIN, 'copy', new Map([['vda', '/vms/copy.qcow2']]));
    const d = parseDomain(xml);
    assert.equal(d.name, 'copy');
    assert.equal(d.uuid, '');
    assert.notDeepEqual(d.macAddresses, ['52:54:00:12:34:56']);
    assert.match(d.macAddresses[0] ?? '', /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(d.disks[0]?.path, '/vms/copy.qcow2');
    assert.match(xml, /<source path="\/vms\/copy-serial.log"\/>/);
    assert.equal(xml.match(/copy-serial\.log/g)?.length, 2, 'serial and console share the new log');
    assert.match(xml, /<source file="\/iso\/x.iso"\/>/);
  });

  it('an exported machine\'s domain has its UUID, MAC, disks, memory and cpus', () => {
    const m = { id: '11111111-2222-4333-8444-555555555555', name: 'dev <1>', folder: '/lib/dev', macAddress: '52:54:00:aa:bb:cc', memoryMiB: 512, cpus: 3, iso: null, disks: [{ index: 0, path: '/lib/dev/top.qcow2', virtualSize: 1 }] } as unknown as MachineDetails;
    const d = parseDomain(domainXmlOf(m, { kvm: false, diskPaths: ['/lib/dev/current-disk0.qcow2'] }));
    assert.deepEqual(d, { name: 'dev <1>', uuid: m.id, memoryMiB: 512, cpus: 3, macAddresses: ['52:54:00:aa:bb:cc'], disks: [{ target: 'vda', path: '/lib/dev/current-disk0.qcow2', format: 'qcow2' }] });
  });

  it('a connection is local (its disks are files here) without a host, or over a unix socket', () => {
    const local = (uri: string): boolean => new LibvirtSource(uri).isLocal;
    assert.deepEqual(['qemu:///system', 'qemu:///session', 'qemu+unix:///system', 'qemu:///system?socket=/x'].map(local), [true, true, true, true]);
    assert.deepEqual(['qemu+ssh://me@server/system', 'qemu://server/system', 'qemu+tcp://localhost/system'].map(local), [false, false, false]);
  });

  it('quotes words for virsh\'s own parser', () => {
    assert.equal(quote('a "b" \\ c'), '"a \\"b\\" \\\\ c"');
  });

  it('words virsh\'s failures in one sentence: wrong key, unreachable host, stopped daemon', () => {
    const uri = 'qemu+ssh://root@127.0.0.1:2222/system';
    assert.equal(virshError(uri, ['list'], 'error: failed to connect to the hypervisor\nerror: Cannot recv data: root@127.0.0.1: Permission denied (publickey).: Connection reset by peer\n').code, 'AUTH_FAILED');
    const e = virshError(uri, ['list'], 'error: failed to connect to the hypervisor\nerror: Cannot recv data: ssh: connect to host 127.0.0.1 port 2222: Connection refused: Connection reset by peer\n');
    assert.equal(e.message, `The host of ${uri} cannot be reached over SSH (ssh: connect to host 127.0.0.1 port 2222: Connection refused).`);
    assert.equal(virshError('qemu:///system', ['list'], "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n").code, 'UNREACHABLE');
  });
});
