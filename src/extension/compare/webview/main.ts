// The comparison table's page, running inside the webview (browser, no Node, no vscode module). Bundled on its own
// into dist/webview/compare.js; talks to the extension only through the messages in ../protocol.ts.
import type { CompareDependency, CompareRow, SnapshotTreeNode } from '../../../engine/machine';
import { formatBytes, formatDate, formatRelativeTime } from '../../format';
import { el } from './dom';
import { nodeLegend, treeOverlaps, treeSvg } from './tree-drawing';
import type { CompareState, FromWebview, PersistedState, RowAction, ToWebview } from '../protocol';

interface VsCodeApi {
  postMessage(message: FromWebview): void;
  getState(): PersistedState | undefined;
  setState(state: PersistedState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const app = document.getElementById('app')!;

type SortKey = 'kind' | 'name' | 'createdAt' | 'sizeBytes' | 'dependsOn' | 'description';

interface Column {
  key: SortKey;
  title: string;
  cell(r: CompareRow, max: number): Node | string;
}

/** The row's kind in words ("linked clone"). */
function kindWords(kind: CompareRow['kind']): string {
  return kind === 'linked' ? 'linked clone' : kind === 'full' ? 'full clone' : kind;
}

/** What a row depends on, in words ("snapshot X of Y"; the machine's name only when it is another machine). */
function dependencyWords(d: CompareDependency, own: string | null = null): string {
  switch (d.kind) {
    case 'nothing':
      return 'nothing';
    case 'machine':
      return `machine "${d.machineName}"`;
    case 'snapshot':
      return d.machineId === own ? `snapshot "${d.snapshotName ?? d.snapshotId ?? '?'}"` : `snapshot "${d.snapshotName ?? d.snapshotId ?? '?'}" of "${d.machineName ?? d.machineId}"`;
  }
}

/**
 * Per-row facts, one column each. What belongs to a machine as a whole (UUID, MAC, whether it runs alongside its
 * source) is said once per machine in the table below, not repeated on each of its snapshots' rows.
 */
const columns: Column[] = [
  { key: 'kind', title: 'Kind', cell: (r) => kindWords(r.kind) },
  { key: 'name', title: 'Name', cell: (r) => nameCell(r) },
  { key: 'createdAt', title: 'Created', cell: (r) => timeCell(r.createdAt) },
  { key: 'sizeBytes', title: 'Size on disk', cell: (r, max) => sizeCell(r, max) },
  { key: 'dependsOn', title: 'Depends on', cell: (r) => dependencyWords(r.dependsOn, r.kind === 'snapshot' ? r.machineId : null) },
  { key: 'description', title: 'Description', cell: (r) => r.description },
];

let state: CompareState | null = null;
/** null: the family order (tree order) the engine gives. */
let sort: { key: SortKey; descending: boolean } | null = null;
let selectedRowId: string | null = null;
let nextRequest = 1;
const status = el('p', { class: 'status', role: 'status' });

window.addEventListener('message', (event: MessageEvent<ToWebview>) => {
  const m = event.data;
  switch (m.type) {
    case 'state':
      state = m.state;
      if (m.state.focusId) selectedRowId = m.state.focusId;
      vscode.setState({ libraryDir: m.state.libraryDir, machineId: m.state.machineId });
      render();
      if (m.state.focusId) focusRow(m.state.focusId, true);
      break;
    case 'reply':
      status.textContent = m.ok ? '' : (m.message ?? '');
      break;
    case 'probe':
      vscode.postMessage(probeReply(m.requestId));
      break;
  }
});
vscode.postMessage({ type: 'ready' });

function render(): void {
  const s = state;
  if (!s) return;
  app.replaceChildren();
  if (s.error) {
    app.append(el('p', { class: 'error' }, s.error));
    return;
  }
  if (s.machineId === null) {
    app.append(el('p', { class: 'muted' }, 'The library has no machines yet: create one from the Machines view.'));
    return;
  }
  const picker = el('select', { id: 'machine', 'aria-label': 'Machine' }) as HTMLSelectElement;
  for (const m of s.machines) {
    const o = el('option', { value: m.id }, m.name) as HTMLOptionElement;
    o.selected = m.id === s.machineId;
    picker.append(o);
  }
  picker.addEventListener('change', () => vscode.postMessage({ type: 'selectMachine', machineId: picker.value }));
  const header = el('header', {}, el('h1', {}, 'Snapshots and clones'), el('label', { for: 'machine' }, 'Machine '), picker);
  // The drawing scrolls within at most part of the window, so the table below it stays in sight.
  const family = el(
    'section',
    { class: 'family' },
    el('h2', {}, 'Snapshot tree'),
    el('div', { class: 'tree-scroll' }, treeSvg(s.trees, s.rows)),
    nodeLegend(),
  );
  const table = el('div', { class: 'scroll' }, rowsTable(s.rows));
  const machines = el('div', { class: 'scroll' }, machinesTable(s.rows));
  const legend = el('details', { class: 'legend' }, el('summary', {}, 'Snapshot, linked clone or full clone?'), legendTable());
  app.append(
    header,
    family,
    el('section', {}, el('h2', {}, 'The family of this machine'), table),
    status,
    el('section', {}, el('h2', {}, 'Machines'), machines),
    legend,
  );
}

/** Facts of each machine of the family, once: its identity on the network and whether it runs beside its source. */
function machinesTable(rows: CompareRow[]): HTMLElement {
  const machines = rows.filter((r) => r.kind !== 'snapshot');
  const head = el('tr', {}, ...['Machine', 'Kind', 'Runs alongside its source', 'UUID', 'MAC'].map((h) => el('th', { scope: 'col' }, h)));
  const body = el(
    'tbody',
    {},
    ...machines.map((r) =>
      el(
        'tr',
        { 'data-id': r.id },
        el('th', { scope: 'row' }, r.name),
        el('td', {}, kindWords(r.kind)),
        // A machine that is no clone has no source to run beside.
        el('td', {}, r.kind === 'machine' ? '—' : r.canRunAlongsideSource ? 'yes' : 'no'),
        el('td', {}, code(r.uuid)),
        el('td', {}, code(r.macAddress)),
      ),
    ),
  );
  return el('table', { class: 'machines', 'aria-label': 'Machines of this family' }, el('thead', {}, head), body);
}

function rowsTable(rows: CompareRow[]): HTMLElement {
  const max = Math.max(1, ...rows.map((r) => r.sizeBytes));
  const sorted = sortRows(rows);
  const head = el('tr');
  for (const c of columns) {
    const sorting = sort?.key === c.key;
    const th = el('th', { scope: 'col', 'aria-sort': sorting ? (sort!.descending ? 'descending' : 'ascending') : 'none' });
    const b = el('button', { class: 'sort', type: 'button', title: `Sort by ${c.title.toLowerCase()}` }, c.title, sorting ? (sort!.descending ? ' ▾' : ' ▴') : '');
    b.addEventListener('click', () => {
      sort = sort?.key === c.key ? (sort.descending ? null : { key: c.key, descending: true }) : { key: c.key, descending: false };
      render();
      (document.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`) as HTMLElement | null)?.focus();
    });
    th.append(b);
    head.append(th);
  }
  head.append(el('th', { scope: 'col' }, 'Actions'));
  const body = el('tbody');
  for (const r of sorted) {
    const tr = el('tr', { 'data-id': r.id, tabindex: r.id === (selectedRowId ?? sorted[0]?.id) ? '0' : '-1', class: `kind-${kindWords(r.kind).replace(' ', '-')}` });
    tr.setAttribute('aria-selected', String(r.id === selectedRowId));
    for (const c of columns) tr.append(el('td', {}, c.cell(r, max)));
    tr.append(el('td', { class: 'actions' }, ...actionsFor(r)));
    tr.addEventListener('click', () => select(r.id));
    tr.addEventListener('keydown', (e) => onRowKey(e, r));
    body.append(tr);
  }
  return el('table', { class: 'rows', 'aria-label': 'Snapshots and clones' }, el('thead', {}, head), body);
}

function actionsFor(r: CompareRow): HTMLElement[] {
  const button = (label: string, action: RowAction, snapshotId: string | null, danger = false): HTMLElement => {
    const b = el('button', { type: 'button', class: danger ? 'danger' : '', 'data-action': action }, label);
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      run(action, r.machineId, snapshotId);
    });
    return b;
  };
  if (r.kind === 'snapshot') {
    const clones = lockingClones(r.id);
    // A locked snapshot cannot be deleted: show the lock and why instead of a button that would only be refused.
    const last =
      clones.length > 0
        ? el('span', { class: 'locked', title: `Locked: ${lockReason(clones)}` }, 'Locked')
        : button('Delete', 'delete', r.id, true);
    return [button('Revert', 'revert', r.id), button('Clone', 'clone', r.id), last];
  }
  return [button('Snapshot', 'takeSnapshot', null), button('Show', 'reveal', null)];
}

function lockReason(clones: string[]): string {
  const names = clones.map((c) => `“${c}”`).join(', ');
  return clones.length === 1 ? `the linked clone ${names} reads its disk layers. Delete or promote it first.` : `the linked clones ${names} read its disk layers. Delete or promote them first.`;
}

/** The linked clones (by name) that keep a snapshot: hanging on it or on a snapshot after it, as the engine counts. */
function lockingClones(snapshotId: string): string[] {
  const names = new Map((state?.rows ?? []).filter((r) => r.kind !== 'snapshot').map((r) => [r.machineId, r.name]));
  const below = (n: SnapshotTreeNode): string[] => [...n.lockedBy, ...n.children.flatMap(below)];
  const find = (nodes: SnapshotTreeNode[]): SnapshotTreeNode | undefined => {
    for (const n of nodes) {
      const hit = n.kind !== 'current' && n.id === snapshotId ? n : find(n.children);
      if (hit) return hit;
    }
    return undefined;
  };
  for (const t of state?.trees ?? []) {
    const n = find(t.roots);
    if (n) return [...new Set(below(n))].map((id) => names.get(id) ?? id);
  }
  return [];
}

function run(action: RowAction, machineId: string, snapshotId: string | null): void {
  status.textContent = '';
  vscode.postMessage({ type: 'action', requestId: nextRequest++, action, machineId, snapshotId });
}

/** Arrow keys move between rows, Home/End jump, Enter reverts to a snapshot (or shows a machine). */
function onRowKey(e: KeyboardEvent, r: CompareRow): void {
  const rows = [...document.querySelectorAll<HTMLTableRowElement>('tbody tr')];
  const i = rows.findIndex((x) => x.dataset['id'] === r.id);
  const go = (j: number): void => {
    const target = rows[Math.max(0, Math.min(rows.length - 1, j))];
    if (target?.dataset['id']) focusRow(target.dataset['id'], true);
  };
  switch (e.key) {
    case 'ArrowDown':
      go(i + 1);
      break;
    case 'ArrowUp':
      go(i - 1);
      break;
    case 'Home':
      go(0);
      break;
    case 'End':
      go(rows.length - 1);
      break;
    case 'Enter':
      if (r.kind === 'snapshot') run('revert', r.machineId, r.id);
      else run('reveal', r.machineId, null);
      break;
    default:
      return;
  }
  e.preventDefault();
}

function select(id: string): void {
  selectedRowId = id;
  for (const tr of document.querySelectorAll<HTMLTableRowElement>('tbody tr')) {
    const on = tr.dataset['id'] === id;
    tr.setAttribute('aria-selected', String(on));
    tr.tabIndex = on ? 0 : -1;
  }
}

function focusRow(id: string, scroll: boolean): void {
  select(id);
  const tr = document.querySelector<HTMLTableRowElement>(`tbody tr[data-id="${CSS.escape(id)}"]`);
  if (!tr) return;
  tr.focus();
  if (scroll) tr.scrollIntoView({ block: 'nearest' });
}

function sortRows(rows: CompareRow[]): CompareRow[] {
  if (!sort) return rows;
  const { key, descending } = sort;
  const sign = descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return c * sign;
  });
}

/** What a column sorts by: the words shown for kind and dependency, the value itself otherwise. */
function sortValue(r: CompareRow, key: SortKey): string | number | boolean {
  if (key === 'kind') return kindWords(r.kind);
  if (key === 'dependsOn') return dependencyWords(r.dependsOn, r.kind === 'snapshot' ? r.machineId : null);
  return r[key];
}

/** The snapshots-vs-clones summary table, compact. */
function legendTable(): HTMLElement {
  const rows: [string, ...string[]][] = [
    ['', 'Snapshot', 'Linked clone', 'Full clone'],
    ['What it is', 'A saved state of this machine', 'A new machine sharing a snapshot’s disk', 'A new, independent machine'],
    ['Disk space', 'Only what changed since the previous state', 'Only its own changes', 'A full copy of the disks'],
    ['Depends on', 'The snapshots before it', 'The source snapshot, which stays locked', 'Nothing'],
    ['Runs alongside the source', 'No: it is the same machine', 'Yes', 'Yes'],
    ['UUID and MAC', 'The machine’s', 'New ones', 'New ones'],
    ['Making it', 'Instant', 'Instant', 'Copies every used byte'],
  ];
  const [head = [''], ...body] = rows;
  return el(
    'table',
    { class: 'legend-table' },
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...body.map(([h, ...cells]) => el('tr', {}, el('th', { scope: 'row' }, h), ...cells.map((c) => el('td', {}, c))))),
  );
}

function nameCell(r: CompareRow): HTMLElement {
  // An automatic checkpoint is marked after its name (the retention may delete it); a snapshot's row carries a
  // small picture of the screen at the snapshot (the whole thumbnail on hover).
  const auto = r.auto ? [' ', el('span', { class: 'auto', title: 'Automatic checkpoint' }, 'auto')] : [];
  const picture = r.kind === 'snapshot' ? state?.thumbnails?.[r.id] : undefined;
  const span = el('span', { class: 'name' }, ...(picture ? [el('img', { class: 'thumbnail', src: picture, width: '48', alt: '', title: `The screen at “${r.name}”` })] : []), r.name, ...auto);
  // Indent by depth in the family tree, so the unsorted table reads as a tree.
  span.style.setProperty('--depth', String(sort ? 0 : r.depth));
  return span;
}

function timeCell(iso: string): HTMLElement {
  return el('time', { datetime: iso, title: formatDate(iso) }, formatRelativeTime(iso));
}

/** A disk-usage bar, relative to the biggest row; a snapshot's saved memory is named apart. */
function sizeCell(r: CompareRow, max: number): HTMLElement {
  const bytes = r.sizeBytes;
  const bar = el('span', { class: 'bar', 'aria-hidden': 'true' });
  bar.style.setProperty('--fill', `${Math.max(bytes > 0 ? 2 : 0, Math.round((bytes / max) * 100))}%`);
  const title = r.memoryBytes > 0 ? `disk ${formatBytes(bytes - r.memoryBytes)} + memory ${formatBytes(r.memoryBytes)}` : '';
  return el('span', { class: 'size', title }, bar, el('span', { class: 'bytes' }, formatBytes(bytes)));
}

function code(text: string): HTMLElement {
  return el('code', {}, text);
}

function probeReply(requestId: number): FromWebview {
  const headers = [...document.querySelectorAll('table.rows thead th')].map((th) => th.textContent?.replace(/[▴▾]/g, '').trim() ?? '');
  const rows = [...document.querySelectorAll<HTMLTableRowElement>('table.rows tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent?.trim() ?? ''));
  return {
    type: 'probeReply',
    requestId,
    headers,
    rows,
    selectedRowId,
    treeNodes: document.querySelectorAll('svg.tree g.node').length,
    treeOverlaps: treeOverlaps(),
    nodeLegend: [...document.querySelectorAll('ul.node-legend li')].map((li) => li.textContent?.trim() ?? ''),
    machineHeaders: [...document.querySelectorAll('table.machines thead th')].map((th) => th.textContent?.trim() ?? ''),
    machineRows: [...document.querySelectorAll<HTMLTableRowElement>('table.machines tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent?.trim() ?? '')),
    sortedBy: sort ? `${sort.key} ${sort.descending ? 'descending' : 'ascending'}` : null,
  };
}
