// The "VM Snapshots" Output channel: a line for every command the extension runs, its duration, and its error.
import * as vscode from 'vscode';
import type { TreeNode } from '../tree/nodes';
import { errorMessage, isCancellation } from './errors';

/** The channel's name, as the Output view lists it. */
export const LOG_CHANNEL_NAME = 'VM Snapshots';

/**
 * A log output channel (VS Code's log level applies: "Developer: Set Log Level…"), made on the first line written
 * so that a window where nothing ran has no channel.
 */
export class OperationLog implements vscode.Disposable {
  private channel: vscode.LogOutputChannel | undefined;

  private get out(): vscode.LogOutputChannel {
    this.channel ??= vscode.window.createOutputChannel(LOG_CHANNEL_NAME, { log: true });
    return this.channel;
  }

  /** Runs one command: its start at debug level, its end with the time it took, its error with the message. */
  async run<T>(command: string, args: unknown[], run: () => Promise<T>): Promise<T> {
    const what = `${command.replace(/^vmsnap\./, '')}${describeTarget(args[0])}`;
    const started = performance.now();
    this.out.debug(`${what}: started`);
    try {
      const result = await run();
      this.out.info(`${what}: ${result === undefined ? 'ended with nothing done (cancelled or nothing to do)' : 'done'} in ${elapsed(started)}`);
      return result;
    } catch (e) {
      if (isCancellation(e)) this.out.info(`${what}: cancelled after ${elapsed(started)}`);
      else {
        this.out.error(`${what}: failed after ${elapsed(started)}: ${errorMessage(e)}`);
        if (e instanceof Error && e.stack) this.out.trace(e.stack);
      }
      throw e;
    }
  }

  /** A line about something that is not a command (a machine that would not power off, a console's finding). */
  warn(message: string): void {
    this.out.warn(message);
  }

  dispose(): void {
    this.channel?.dispose();
  }
}

function elapsed(started: number): string {
  const ms = performance.now() - started;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** What a command acted on, in the words of the tree: “machine”, “machine › snapshot”, or nothing (the palette). */
function describeTarget(target: unknown): string {
  if (typeof target === 'string') return ` “${target}”`;
  if (typeof target !== 'object' || target === null) return '';
  if ('kind' in target && 'id' in target) {
    const node = target as TreeNode;
    switch (node.kind) {
      case 'machine':
      case 'current':
        return ` “${node.machine.name}”`;
      case 'snapshot':
        return ` “${node.machine.name} › ${node.snapshot.name}”`;
      case 'cloneRef':
        return ` “${node.clone.name}”`;
      case 'broken':
        return ` “${node.folder}”`;
      case 'libvirt':
        return ` “${node.id}”`;
    }
  }
  const ref = target as { machine?: unknown; snapshot?: unknown };
  if (typeof ref.machine !== 'string') return '';
  return typeof ref.snapshot === 'string' ? ` “${ref.machine} › ${ref.snapshot}”` : ` “${ref.machine}”`;
}
