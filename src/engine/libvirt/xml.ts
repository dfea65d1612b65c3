// libvirt's XML documents through fast-xml-parser: read into plain records (domains, snapshots), and edited
// in document order (a clone's domain, a snapshot's new description) so that nothing else in them changes.
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

/** A node in document order: one element ({ tag: children, ':@': attributes }) or a text node ({ '#text': text }). */
export type XNode = Record<string, unknown>;

const ordered = new XMLParser({ preserveOrder: true, ignoreAttributes: false, attributeNamePrefix: '', parseTagValue: false, parseAttributeValue: false, trimValues: false });
const builder = new XMLBuilder({ preserveOrder: true, ignoreAttributes: false, attributeNamePrefix: '', suppressEmptyNode: true });

export function parseOrdered(xml: string): XNode[] {
  return ordered.parse(xml) as XNode[];
}

export function buildOrdered(nodes: XNode[]): string {
  return builder.build(nodes) as string;
}

/** The element's tag name, or null for a text node. */
export function tagOf(node: XNode): string | null {
  return Object.keys(node).find((k) => k !== ':@' && k !== '#text') ?? null;
}

export function childrenOf(node: XNode): XNode[] {
  const tag = tagOf(node);
  if (tag === null) return [];
  const c = node[tag];
  return Array.isArray(c) ? (c as XNode[]) : [];
}

/** The element children named `tag`. */
export function elements(node: XNode | XNode[], tag: string): XNode[] {
  const list = Array.isArray(node) ? node : childrenOf(node);
  return list.filter((n) => tagOf(n) === tag);
}

/** The first element along a path of tags, or null. */
export function path(node: XNode | XNode[], ...tags: string[]): XNode | null {
  let current: XNode | XNode[] = node;
  for (const tag of tags) {
    const next: XNode | undefined = elements(current, tag)[0];
    if (next === undefined) return null;
    current = next;
  }
  return Array.isArray(current) ? null : current;
}

export function attr(node: XNode | null, name: string): string | null {
  if (node === null) return null;
  const a = node[':@'] as Record<string, string> | undefined;
  return a?.[name] ?? null;
}

export function setAttr(node: XNode, name: string, value: string): void {
  const a = (node[':@'] as Record<string, string> | undefined) ?? {};
  a[name] = value;
  node[':@'] = a;
}

/** The element's text content (its text children joined), '' when none. */
export function textOf(node: XNode | null): string {
  if (node === null) return '';
  return childrenOf(node)
    .map((n) => (typeof n['#text'] === 'string' || typeof n['#text'] === 'number' ? String(n['#text']) : ''))
    .join('');
}

export function setText(node: XNode, text: string): void {
  const tag = tagOf(node);
  if (tag !== null) node[tag] = [{ '#text': text }];
}

/** Replaces the element children named `tag` (all of them) with `replacement` (none: removes them). */
export function removeElements(node: XNode, tag: string): void {
  const t = tagOf(node);
  if (t === null) return;
  node[t] = childrenOf(node).filter((n) => tagOf(n) !== tag);
}

export function appendElement(node: XNode, child: XNode): void {
  const t = tagOf(node);
  if (t !== null) node[t] = [...childrenOf(node), child];
}

/** A new element with attributes and text. */
export function element(tag: string, attributes: Record<string, string> = {}, text?: string): XNode {
  const n: XNode = { [tag]: text === undefined ? [] : [{ '#text': text }] };
  if (Object.keys(attributes).length > 0) n[':@'] = { ...attributes };
  return n;
}

/** The document's root element, or an error naming what was expected. */
export function rootOf(nodes: XNode[], tag: string): XNode {
  const root = elements(nodes, tag)[0];
  if (root === undefined) throw new Error(`libvirt answered without a <${tag}> document.`);
  return root;
}
