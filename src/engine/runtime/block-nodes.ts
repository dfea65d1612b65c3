// Which file each of QEMU's qcow2 nodes reads. QEMU's own filename for a node is the plain path until the graph
// changes; after a live snapshot it is a `json:{...}` description of the whole backing chain, which QEMU cuts at
// 4 KiB (a chain of about 27 layers). So every node we create names its protocol child `<node>-file`, whose
// filename stays the plain path.
import { resolve } from 'node:path';
import type { QmpClient } from './qmp';

interface NamedNode {
  'node-name': string;
  drv: string;
  file: string;
}

/** The node name we give a qcow2 node's protocol (file) child. */
export function fileNodeName(formatNode: string): string {
  return `${formatNode}-file`;
}

/** The file of a node from QEMU's filename for it (nodes without a named child: started before they had one). */
function fileFromName(name: string): string | null {
  if (!name.startsWith('json:')) return resolve(name);
  try {
    const desc = JSON.parse(name.slice(5)) as { file?: { driver?: string; filename?: string } };
    if (desc.file?.driver === 'file' && typeof desc.file.filename === 'string') return resolve(desc.file.filename);
  } catch {
    // not a description we know (or one QEMU cut short)
  }
  return null;
}

/** Format (not protocol) nodes: node name -> absolute path of the file it reads, where it can be told. */
export async function formatNodeFiles(qmp: QmpClient): Promise<Map<string, string>> {
  const nodes = await qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
  const byName = new Map(nodes.map((n) => [n['node-name'], n]));
  const files = new Map<string, string>();
  for (const n of nodes) {
    if (n.drv === 'file' || n.drv === 'host_device') continue;
    const child = byName.get(fileNodeName(n['node-name']));
    const file = child !== undefined ? resolve(child.file) : fileFromName(n.file);
    if (file !== null) files.set(n['node-name'], file);
  }
  return files;
}
