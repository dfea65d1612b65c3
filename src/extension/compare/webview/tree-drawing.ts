// The comparison page's drawing of the snapshot trees, its legend, and the check that no label overlaps another.
import type { CompareRow, SnapshotTree, SnapshotTreeNode } from '../../../engine/machine';
import { formatRelativeTime } from '../../format';
import { el, SVG } from './dom';

/** What the drawing's shapes and colours mean. */
export function nodeLegend(): HTMLElement {
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

/**
 * The snapshot trees as VMware's Snapshot Manager draws them: left to right, one row per leaf, the current state
 * as "You are here", linked clones hanging off the snapshot they depend on.
 */
export function treeSvg(trees: SnapshotTree[], rows: CompareRow[]): SVGSVGElement {
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

/** Pairs of drawn labels and nodes whose boxes overlap (none when the layout is right). */
export function treeOverlaps(): string[] {
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
