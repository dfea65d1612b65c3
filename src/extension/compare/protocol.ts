// The messages between the comparison panel (extension side) and its webview, shared by both sides.
import type { CompareRow, SnapshotTree } from '../../engine/machine';

export const VIEW_TYPE = 'vmsnap.compare';

/** What the table shows: one machine's family (the machine it was cloned from up to the root, and all clones). */
export interface CompareState {
  libraryDir: string;
  machines: { id: string; name: string }[];
  /** The selected machine; null when the library is empty. */
  machineId: string | null;
  rows: CompareRow[];
  /** Snapshot trees of the family's machines, for the SVG (the selected machine first). */
  trees: SnapshotTree[];
  /** The row to select and scroll to (Show in Comparison Table). */
  focusId: string | null;
  /** Why the state could not be read, in one sentence. */
  error: string | null;
  /** Snapshot id → its thumbnail as a data: URI (snapshots without one are absent). */
  thumbnails?: Record<string, string>;
}

/** Row actions go to the same commands as the tree's menus. */
export type RowAction = 'revert' | 'clone' | 'delete' | 'takeSnapshot' | 'reveal';

export type ToWebview =
  | { type: 'state'; state: CompareState }
  | { type: 'reply'; requestId: number; ok: boolean; message: string | null }
  /** Asks what the webview shows (tests read the rendered table through it). */
  | { type: 'probe'; requestId: number };

export type FromWebview =
  | { type: 'ready' }
  | { type: 'selectMachine'; machineId: string }
  | { type: 'action'; requestId: number; action: RowAction; machineId: string; snapshotId: string | null }
  | {
      type: 'probeReply';
      requestId: number;
      headers: string[];
      rows: string[][];
      selectedRowId: string | null;
      treeNodes: number;
      sortedBy: string | null;
      /** Drawn labels and nodes that overlap one another ("text “A” × circle “B”"); empty when none do. */
      treeOverlaps: string[];
      /** The entries of the drawing's legend. */
      nodeLegend: string[];
      /** The table of the family's machines (facts said once per machine). */
      machineHeaders: string[];
      machineRows: string[][];
    };

/** What the webview keeps across reloads (vscode.setState), and the serializer restores the panel from. */
export interface PersistedState {
  libraryDir: string;
  machineId: string | null;
}

export function isFromWebview(m: unknown): m is FromWebview {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'ready' || t === 'selectMachine' || t === 'action' || t === 'probeReply';
}
