// Clones of libvirt domains, like virt-clone: a new domain with a new UUID (libvirt makes it), new MACs, its own
// serial log, and its own disks. Full: the disks' data copied (qemu-img on this computer; the storage API, vol-clone,
// on a remote host). Linked: each new disk is an overlay on a frozen layer (an external snapshot's file), refused
// for running sources as VMware refuses it.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { OperationOptions } from '../operation';
import { SourceError, unsupported } from '../sources';
import type { CloneKind, SourceSnapshot } from '../sources';
import type { DomainView, LibvirtSource } from './libvirt-source';
import { frozenFiles, notInPool, REMOTE_FULL_FROM_SNAPSHOT } from './records';
import { attr, buildOrdered, elements, parseOrdered, path, removeElements, rootOf, setAttr, setText, textOf, type XNode } from './xml';

const run = promisify(execFile);

export interface ClonedDomain {
  uuid: string;
  takenSnapshot: SourceSnapshot | null;
}

/** A new domain `name` from `v` (its current state, or snapshot `from`). Anything made before a failure is removed. */
export async function cloneDomain(source: LibvirtSource, v: DomainView, name: string, kind: CloneKind, from: SourceSnapshot | null, options: OperationOptions): Promise<ClonedDomain> {
  if (v.machine.powerState !== 'off') {
    throw new SourceError('POWERED_ON', `Domain "${v.machine.name}" is ${v.machine.powerState}: a clone is made of a powered-off domain (as VMware and virt-clone make them), so stop it first.`);
  }
  if (from !== null) {
    const refusal = kind === 'linked' ? from.refusals.linkedClone : from.refusals.fullClone;
    if (refusal !== undefined) throw unsupported(`${kind} clone`, refusal);
  }
  if (await source.virsh.exists(['domuuid', name])) throw new SourceError('ALREADY_EXISTS', `libvirt at ${source.uri} already has a domain "${name}": choose another name.`);

  const disks = v.domain.disks.filter((d) => d.path !== null);
  let takenSnapshot: SourceSnapshot | null = null;
  let backing = new Map<string, string>();
  if (kind === 'linked') {
    if (from === null) {
      if (v.snapshots.some((s) => s.location === 'internal')) {
        throw unsupported('linked clone', `Domain "${v.machine.name}" has internal snapshots, and a linked clone of its current state needs an external snapshot of it, after which libvirt 9.0 could no longer revert them: make a full clone.`);
      }
      // The frozen layer: an external disk-only snapshot of the powered-off source (VMware takes a snapshot too).
      const snapName = `base-of-${name}`;
      await source.virsh.run(['snapshot-create-as', '--domain', v.machine.uuid, '--name', snapName, '--description', `Frozen layer of the linked clone "${name}".`, '--disk-only']);
      takenSnapshot = await source.snapshot(v.machine.uuid, snapName);
      from = takenSnapshot;
    }
    backing = frozenFiles(await source.virsh.run(['snapshot-dumpxml', '--domain', v.machine.uuid, '--snapshotname', from.name]));
  }

  const made: string[] = [];
  try {
    const newPaths = new Map<string, string>();
    for (const d of disks) {
      const src = d.path as string;
      const target = disks.length === 1 ? `${name}.qcow2` : `${name}-${d.target}.qcow2`;
      const dst = join(dirname(src), target);
      if (kind === 'full') newPaths.set(d.target, await fullCopy(source, src, dst, target, from, options));
      else {
        const base = backing.get(d.target);
        if (base === undefined) throw unsupported('linked clone', `Snapshot "${from?.name ?? ''}" froze no file for disk ${d.target}.`);
        newPaths.set(d.target, await overlay(source, base, dst, target));
      }
      made.push(newPaths.get(d.target) as string);
    }
    const xml = cloneXml(await source.virsh.run(['dumpxml', '--domain', v.machine.uuid, '--inactive', '--security-info']), name, newPaths);
    await source.virsh.runWithDocument((file) => ['define', '--file', file], xml);
    return { uuid: (await source.virsh.run(['domuuid', name])).trim(), takenSnapshot };
  } catch (e) {
    for (const p of made) await removeDisk(source, p).catch(() => {});
    throw e;
  }
}

/** The source's domain XML as the clone's: name, no UUID (libvirt makes one), new MACs, new disks, own logs. */
export function cloneXml(xml: string, name: string, newPaths: ReadonlyMap<string, string>): string {
  const nodes = parseOrdered(xml);
  const domain = rootOf(nodes, 'domain');
  const oldName = (textOf(path(domain, 'name')) || 'domain').trim();
  setText(path(domain, 'name') as XNode, name);
  removeElements(domain, 'uuid');
  const devices = path(domain, 'devices');
  if (devices !== null) {
    for (const nic of elements(devices, 'interface')) {
      const mac = path(nic, 'mac');
      if (mac !== null) setAttr(mac, 'address', newMac());
    }
    for (const disk of elements(devices, 'disk')) {
      const target = attr(path(disk, 'target'), 'dev') ?? '';
      const p = newPaths.get(target);
      const src = path(disk, 'source');
      if (p === undefined || src === null) continue;
      setAttr(src, 'file', p);
      setAttr(path(disk, 'driver') ?? src, 'type', 'qcow2');
      removeElements(disk, 'backingStore');
    }
    // Serial and console logs in files: the clone writes its own, next to the source's.
    const renamed = new Map<string, string>();
    for (const tag of ['serial', 'console']) {
      for (const dev of elements(devices, tag)) {
        const src = path(dev, 'source');
        const p = attr(src, 'path');
        if (src === null || p === null || attr(dev, 'type') !== 'file') continue;
        if (!renamed.has(p)) {
          const file = basename(p).includes(oldName) ? basename(p).split(oldName).join(name) : `${name}-${basename(p)}`;
          renamed.set(p, join(dirname(p), file));
        }
        setAttr(src, 'path', renamed.get(p) as string);
      }
    }
  }
  return buildOrdered(nodes);
}

/** A locally administered unicast MAC in QEMU's 52:54:00 range, as virt-clone gives. */
function newMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

async function fullCopy(source: LibvirtSource, src: string, dst: string, volName: string, from: SourceSnapshot | null, options: OperationOptions): Promise<string> {
  if (source.isLocal) {
    if (existsSync(dst)) throw new SourceError('ALREADY_EXISTS', `${dst} exists: choose another clone name.`);
    const snap = from === null ? [] : ['-l', `snapshot.name=${from.name}`];
    // A cancelled or failed copy leaves part of a file, which the caller does not know of yet: it goes here.
    await qemuImg(['convert', '-O', 'qcow2', ...snap, src, dst], options.signal).catch(async (e: unknown) => {
      await rm(dst, { force: true });
      throw e;
    });
    return dst;
  }
  if (from !== null) throw unsupported('full clone', REMOTE_FULL_FROM_SNAPSHOT);
  const pool = await poolOf(source, src);
  await source.virsh.run(['vol-clone', '--pool', pool, '--vol', src, '--newname', volName], { timeoutMs: 60 * 60000 });
  return (await source.virsh.run(['vol-path', '--pool', pool, '--vol', volName])).trim();
}

async function overlay(source: LibvirtSource, base: string, dst: string, volName: string): Promise<string> {
  if (source.isLocal) {
    if (existsSync(dst)) throw new SourceError('ALREADY_EXISTS', `${dst} exists: choose another clone name.`);
    const info = JSON.parse((await qemuImg(['info', '--output=json', '-U', base])).stdout) as { format?: string };
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', info.format ?? 'qcow2', dst]);
    return dst;
  }
  const pool = await poolOf(source, base);
  const capacity = (await source.virsh.run(['vol-info', '--vol', base, '--bytes'])).match(/Capacity:\s+(\d+)/)?.[1] ?? '0';
  await source.virsh.run(['vol-create-as', '--pool', pool, '--name', volName, '--capacity', capacity, '--format', 'qcow2', '--backing-vol', base, '--backing-vol-format', 'qcow2']);
  return (await source.virsh.run(['vol-path', '--pool', pool, '--vol', volName])).trim();
}

async function removeDisk(source: LibvirtSource, p: string): Promise<void> {
  if (source.isLocal) await rm(p, { force: true });
  else await source.virsh.run(['vol-delete', '--vol', p]);
}

/** The storage pool holding a remote disk, or the refusal: without one, libvirt cannot copy a file there. */
async function poolOf(source: LibvirtSource, file: string): Promise<string> {
  const lookup = async (): Promise<string> => (await source.virsh.run(['vol-pool', '--vol', file])).trim();
  try {
    return await lookup();
  } catch {
    // A pool lists the files it held at its last refresh: refresh the active pools once and look again.
  }
  const pools = (await source.virsh.run(['pool-list', '--name'])).split('\n').map((l) => l.trim()).filter((l) => l !== '');
  await source.virsh.batch(pools.map((p) => ['pool-refresh', '--pool', p]));
  try {
    return await lookup();
  } catch {
    throw unsupported('clone', notInPool(file, source.uri));
  }
}

async function qemuImg(args: string[], signal?: AbortSignal): Promise<{ stdout: string }> {
  try {
    return await run(process.env.VMSNAP_QEMU_IMG ?? 'qemu-img', args, { maxBuffer: 16 * 1024 * 1024, ...(signal === undefined ? {} : { signal }) });
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ABORT_ERR') throw new SourceError('ABORTED', 'The clone was cancelled; its copies were removed.', { cause: e });
    throw new SourceError('FAILED', `qemu-img ${args[0]} failed: ${(err.stderr ?? err.message).trim().split('\n')[0] ?? ''}`, { cause: e });
  }
}
