// The comparison table's page, running inside the webview (browser, no Node, no vscode module). Bundled on its own
// into dist/webview/compare.js; talks to the extension only through the messages in ../protocol.ts.
import type { CompareDependency, CompareRow, SnapshotTree, SnapshotTreeNode } from '../../../engine/machine';
import { formatBytes, formatDate, formatRelativeTime } from '../../format';
import type { CompareState, FromWebview, PersistedState, RowAction, ToWebview } from '../protocol';

interface VsCodeApi {
  postMessage(message: FromWebview): void;
  getState(): PersistedState | undefined;
  setState(state: PersistedState): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const app = document.getElementById('app')!;
const SVG = 'http://www.w3.org/2000/svg';

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

/** What the drawing's shapes and colours mean. */
function nodeLegend(): HTMLElement {
  const swatch = (kind: string, shape: 'circle' | 'rect', label: string): HTMLElement => {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('width', '16');
    svg.setAttribute('height', '16');
    svg.setAttribute('viewBox', '-9 -9 18 18');
    svg.setAttribute('aria-hidden', 'true');
    const g = document.createElementNS(SVG, 'g');
    g.setAttribute('class', `node ${kind}`);
    const s = document.createElementNS(SVG, shape);
    if (shape === 'rect') {
      for (const [k, v] of Object.entries({ x: '-7', y: '-7', width: '14', height: '14', rx: '3' })) s.setAttribute(k, v);
    } else s.setAttribute('r', kind === 'current' ? '5' : '6');
    g.append(s);
    svg.append(g);
    return el('li', {}, svg as unknown as HTMLElement, label);
  };
  return el(
    'ul',
    { class: 'node-legend', 'aria-label': 'Legend' },
    swatch('machine', 'rect', 'machine'),
    swatch('snapshot', 'circle', 'snapshot'),
    swatch('snapshot parent', 'circle', 'the current state descends from it'),
    swatch('snapshot locked', 'circle', 'locked by a linked clone'),
    swatch('current', 'circle', 'You are here (current state)'),
    swatch('clone', 'rect', 'linked clone (dashed line)'),
  );
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

/**
 * The snapshot trees as VMware's Snapshot Manager draws them: left to right, one row per leaf, the current state
 * as "You are here", linked clones hanging off the snapshot they depend on.
 */
function treeSvg(trees: SnapshotTree[], rows: CompareRow[]): SVGSVGElement {
  const dy = 40;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'tree');
  svg.setAttribute('role', 'img');
  const names = new Map(rows.filter((r) => r.kind !== 'snapshot').map((r) => [r.machineId, r.name]));
  // Each depth is a column as wide as its widest label, so no label reaches the next column's node ("You are
  // here" beside a long checkpoint name); very long names are cut, whole in the tooltip.
  const label = (name: string): string => (name.length > 32 ? `${name.slice(0, 31)}…` : name);
  const widths: number[] = [];
  const need = (depth: number, text: string, sub: string): void => {
    widths[depth] = Math.max(widths[depth] ?? 0, textWidth(label(text), 12), textWidth(sub, 10.5));
  };
  const measure = (n: SnapshotTreeNode, depth: number): void => {
    if (n.kind === 'current') need(depth, 'You are here', '');
    else {
      need(depth, n.name, formatRelativeTime(n.createdAt));
      for (const c of n.children) measure(c, depth + 1);
      for (const clone of n.lockedBy) need(depth + 1, names.get(clone) ?? clone.slice(0, 8), 'linked clone');
    }
  };
  for (const tree of trees) {
    need(0, tree.machineName, 'machine');
    for (const r of tree.roots) measure(r, 1);
  }
  const xs: number[] = [20];
  for (let d = 1; d <= widths.length; d++) xs[d] = xs[d - 1]! + 14 + (widths[d - 1] ?? 0) + 36;
  const xAt = (depth: number): number => xs[depth] ?? 20;
  let row = 0;
  let maxDepth = 0;
  const layer = document.createElementNS(SVG, 'g');
  const edges = document.createElementNS(SVG, 'g');
  const node = (x: number, y: number, text: string, sub: string, kind: string): void => {
    const g = document.createElementNS(SVG, 'g');
    g.setAttribute('class', `node ${kind}`);
    g.setAttribute('transform', `translate(${x},${y})`);
    const shape = document.createElementNS(SVG, kind === 'machine' || kind === 'clone' ? 'rect' : 'circle');
    if (shape instanceof SVGRectElement) {
      shape.setAttribute('x', '-9');
      shape.setAttribute('y', '-9');
      shape.setAttribute('width', '18');
      shape.setAttribute('height', '18');
      shape.setAttribute('rx', '3');
    } else shape.setAttribute('r', kind === 'current' ? '7' : '9');
    const t = document.createElementNS(SVG, 'text');
    // The label sits above the line that leaves the node to the right, the date below it: no line crosses text.
    t.setAttribute('x', '14');
    t.setAttribute('y', '-5');
    t.textContent = label(text);
    const s = document.createElementNS(SVG, 'text');
    s.setAttribute('x', '14');
    s.setAttribute('y', '15');
    s.setAttribute('class', 'sub');
    s.textContent = sub;
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `${text}${sub ? ` (${sub})` : ''}`;
    g.append(title, shape, t, s);
    layer.append(g);
  };
  const edge = (x1: number, y1: number, x2: number, y2: number, dashed = false): void => {
    const p = document.createElementNS(SVG, 'path');
    // From below the parent's node when the child is on a later row, so the line never crosses the parent's label.
    const d = y2 === y1 ? `M${x1 + 9},${y1} L${x2 - 9},${y2}` : `M${x1},${y1 + 9} L${x1},${y2 - 10} Q${x1},${y2} ${x1 + 10},${y2} L${x2 - 9},${y2}`;
    p.setAttribute('d', d);
    if (dashed) p.setAttribute('class', 'dashed');
    edges.append(p);
  };
  const place = (n: SnapshotTreeNode, depth: number, px: number, py: number): void => {
    const x = xAt(depth);
    maxDepth = Math.max(maxDepth, depth);
    const first = row;
    const y = 24 + first * dy;
    if (n.kind === 'current') {
      node(x, y, 'You are here', '', 'current');
      row++;
    } else {
      node(x, y, n.name, formatRelativeTime(n.createdAt), n.isCurrentParent ? 'snapshot parent' : n.lockedBy.length > 0 ? 'snapshot locked' : 'snapshot');
      if (n.children.length === 0 && n.lockedBy.length === 0) row++;
      for (const c of n.children) place(c, depth + 1, x, y);
      for (const clone of n.lockedBy) {
        const cy = 24 + row * dy;
        node(xAt(depth + 1), cy, names.get(clone) ?? clone.slice(0, 8), 'linked clone', 'clone');
        edge(x, y, xAt(depth + 1), cy, true);
        maxDepth = Math.max(maxDepth, depth + 1);
        row++;
      }
      if (row === first) row++;
    }
    edge(px, py, x, y);
  };
  for (const tree of trees) {
    const top = 24 + row * dy;
    node(20, top, tree.machineName, 'machine', 'machine');
    if (tree.roots.length === 0) row++;
    for (const r of tree.roots) place(r, 1, 20, top);
    row++;
  }
  svg.append(edges, layer);
  const width = xAt(maxDepth) + 14 + (widths[maxDepth] ?? 0) + 20;
  const height = 24 + row * dy - dy / 2;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('aria-label', `Snapshot tree with ${layer.childElementCount} nodes`);
  return svg;
}

let measureContext: CanvasRenderingContext2D | null | undefined;

/** How wide `text` is drawn at `px` in the workbench's font (a generous guess where a canvas cannot measure). */
function textWidth(text: string, px: number): number {
  measureContext ??= document.createElement('canvas').getContext('2d');
  if (!measureContext) return text.length * px * 0.62;
  const family = getComputedStyle(document.body).fontFamily || 'sans-serif';
  measureContext.font = `${px}px ${family}`;
  return Math.ceil(measureContext.measureText(text).width);
}

function nameCell(r: CompareRow): HTMLElement {
  const span = el('span', { class: 'name' }, r.name);
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

/** Pairs of drawn labels and nodes whose boxes overlap (none when the layout is right). */
function treeOverlaps(): string[] {
  const boxes = [...document.querySelectorAll<SVGGraphicsElement>('svg.tree g.node text, svg.tree g.node circle, svg.tree g.node rect')]
    .filter((e) => e.textContent !== '' || e.tagName !== 'text')
    .map((e) => ({ name: `${e.tagName} “${e.closest('g.node')?.querySelector('text')?.textContent ?? ''}”`, box: e.getBoundingClientRect() }));
  const out: string[] = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!;
      const b = boxes[j]!;
      if (a.name.slice(a.name.indexOf(' ')) === b.name.slice(b.name.indexOf(' '))) continue;
      const overlap = a.box.left < b.box.right - 0.5 && b.box.left < a.box.right - 0.5 && a.box.top < b.box.bottom - 0.5 && b.box.top < a.box.bottom - 0.5;
      if (overlap) out.push(`${a.name} × ${b.name}`);
    }
  }
  return out;
}

function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== '') e.setAttribute(k, v);
  e.append(...children);
  return e;
}
