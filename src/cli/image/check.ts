// `vmsnap image check`: metadata consistency, and its repair (like qemu-img check).
import { check, checkExitStatus } from '../../engine/qcow2/check';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

export const imageCheckCommand: Command<CliContext> = {
  name: 'check',
  summary: 'check a qcow2 image\'s metadata for corruption and leaked clusters (like qemu-img check)',
  description:
    'Exit status 0 when clean, 2 when corruptions remain, 3 when only leaked clusters remain (1 on an error).\n' +
    'Without --repair the image is only read.',
  args: [{ name: 'FILE', description: 'a qcow2 image' }],
  flags: [{ name: 'repair', kind: 'boolean', description: 'fix leaks, refcounts and flags in place, then check again' }],
  examples: ['vmsnap image check disk.qcow2', 'vmsnap image check disk.qcow2 --repair'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const result = await check(file, { repair: inv.flag('repair') });
    const status = checkExitStatus(result);
    emit(ctx, { file, status, ...result }, () => {
      const lines = [...result.errors];
      if (result.repairedLeaks + result.repairedCorruptions > 0) {
        lines.push(
          '',
          'The following inconsistencies were found and repaired:',
          `    ${plural(result.repairedLeaks, 'leaked cluster', 'leaked clusters')}`,
          `    ${plural(result.repairedCorruptions, 'corruption', 'corruptions')}`,
        );
      }
      if (lines.length > 0) lines.push('');
      if (result.corruptions > 0) {
        lines.push(
          `${plural(result.corruptions, 'error was', 'errors were')} found on the image.`,
          'Data may be corrupted, or further writes to the image may corrupt it.',
        );
      }
      if (result.leaks > 0) {
        lines.push(
          `${plural(result.leaks, 'leaked cluster was', 'leaked clusters were')} found on the image.`,
          'This means waste of disk space, but no harm to data.',
        );
      }
      if (result.corruptions === 0 && result.leaks === 0) lines.push('No errors were found on the image.');
      if (result.dirty) lines.push('The image is marked dirty: run with --repair to bring its refcounts up to date.');
      if (result.markedCorrupt) lines.push('The image is marked corrupt: QEMU opens it read-only until it is repaired.');
      const percent = result.totalClusters > 0 ? ((result.allocatedClusters / result.totalClusters) * 100).toFixed(2) : '0.00';
      lines.push(`${result.allocatedClusters}/${result.totalClusters} = ${percent}% allocated`, `Image end offset: ${result.imageEndOffset}`);
      return lines.join('\n');
    });
    return status;
  },
};
