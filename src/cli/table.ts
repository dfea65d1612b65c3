// Plain-text tables for terminal output: columns padded to their widest cell.

export interface Column {
  header: string;
  /** Numbers read best right-aligned. */
  align?: 'left' | 'right';
}

/** A cell on one line: newlines and tabs are escaped too (output.ts escapes the rest when it prints). */
function oneLine(cell: string): string {
  return cell.replace(/[\n\r\t]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : '\\r'));
}

export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  rows = rows.map((r) => r.map(oneLine));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        return c.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n');
}
