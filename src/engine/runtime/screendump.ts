// A screenshot of a running machine's screen, written by QEMU itself (QMP screendump).
import { resolve } from 'node:path';
import { QemuError, isQmpError } from './errors';
import { runtimeFiles } from './files';
import { runtimeInfo } from './qemu';
import { withQmp, type QmpOptions } from './qmp';

export type ScreendumpFormat = 'png' | 'ppm';

/**
 * Writes the guest's screen as it is now to `file` (QEMU itself writes it, so the path is made absolute). The
 * machine must be running or paused and have a display device.
 */
export async function screendump(folder: string, file: string, format: ScreendumpFormat = 'png', qmp: QmpOptions = {}): Promise<string> {
  const files = runtimeFiles(folder);
  const target = resolve(file);
  const info = await runtimeInfo(folder);
  if (info === null) throw new QemuError('NOT_RUNNING', 'The machine is off: start it to take a screenshot.');
  if ((info.display ?? 'none') === 'none') {
    throw new QemuError('INVALID_ARGUMENT', 'The machine runs without a display device, so it has no screen to capture; set a display (std or virtio) and start it again.');
  }
  try {
    await withQmp(files.qmpSocket, (c) => c.execute('screendump', { filename: target, format }), qmp);
  } catch (e) {
    if (isQmpError(e)) throw new QemuError('QMP_ERROR', `QEMU could not write the screenshot to ${target}: ${e.description}`, { cause: e });
    throw e;
  }
  return target;
}
