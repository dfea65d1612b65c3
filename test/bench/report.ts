/** One line of the benchmark table: our time against QEMU's tool doing the same work. */
export interface BenchRow {
  operation: string;
  /** Median milliseconds of our implementation. */
  oursMs: number;
  /** Median milliseconds of the QEMU tool, or null when there is no counterpart. */
  qemuMs: number | null;
  /** A target the row is held to, e.g. "< 5 ms" or "<= 1.25x". */
  target?: string;
  /** Whether the target is met. */
  met?: boolean;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function formatTable(rows: readonly BenchRow[]): string {
  const header = ['operation', 'ours', 'qemu (tool or by hand)', 'ratio', 'target'];
  const lines = rows.map((r) => [
    r.operation,
    formatMs(r.oursMs),
    r.qemuMs === null ? '-' : formatMs(r.qemuMs),
    r.qemuMs === null || r.qemuMs === 0 ? '-' : `${(r.oursMs / r.qemuMs).toFixed(2)}x`,
    r.target === undefined ? '' : `${r.target} ${r.met ? 'ok' : 'MISSED'}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [row(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}
