// The library the settings name: opened once, reopened when the settings change, and its changes as one event.
import * as vscode from 'vscode';
import { resolve } from 'node:path';
import { Library, defaultLibraryDir, type LibraryScan } from '../engine/machine';
import type { QemuOptions } from '../engine/runtime';
import { LibraryWatcher } from './library-watcher';

/**
 * A change of the library: seen on disk in `folders` (any process, this window's own changes included, after the
 * watcher's debounce) with the library as read right after (`scan`, unless that failed), announced by this window
 * right after it changed something, or the setting now names another folder.
 */
export type LibraryChange = { origin: 'disk'; folders: ReadonlySet<string>; scan: LibraryScan | undefined } | { origin: 'window' | 'setting' };

/** The library the settings name, opened once, and an event that fires (debounced) whenever it changes on disk. */
export class LibraryService implements vscode.Disposable {
  private opening: { key: string; library: Promise<Library> } | undefined;
  private readonly changed = new vscode.EventEmitter<LibraryChange>();
  private readonly watcher = new LibraryWatcher((folders) => void this.rewatchThenFire(folders));
  private readonly subscriptions: vscode.Disposable[] = [];
  /** Fires after the library changed on disk (any process) or the setting now names another folder. */
  readonly onDidChange = this.changed.event;

  constructor() {
    this.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('vmsnap.libraryFolder')) {
          this.opening = undefined;
          this.watcher.close();
          this.changed.fire({ origin: 'setting' });
        } else if (e.affectsConfiguration('vmsnap.qemuPath') || e.affectsConfiguration('vmsnap.accelerator')) {
          // The next start uses the new QEMU; machines running now keep theirs.
          this.opening = undefined;
        }
      }),
    );
  }

  /** The folder the settings name: `vmsnap.libraryFolder`, else VMSNAP_LIBRARY, else the per-user data folder. */
  get dir(): string {
    const configured = vscode.workspace.getConfiguration('vmsnap').get<string>('libraryFolder', '').trim();
    if (configured === '') return defaultLibraryDir();
    return resolve(configured.replace(/^~(?=$|\/)/, process.env['HOME'] ?? '~'));
  }

  /**
   * How machines are run: `vmsnap.qemuPath` (else VMSNAP_QEMU, else qemu-system-x86_64 on PATH) and
   * `vmsnap.accelerator` ('auto': VMSNAP_QEMU_ACCEL, else KVM when usable, TCG otherwise).
   */
  get qemu(): QemuOptions {
    const c = vscode.workspace.getConfiguration('vmsnap');
    const path = c.get<string>('qemuPath', '').trim();
    const accel = c.get<string>('accelerator', 'auto');
    return {
      ...(path !== '' ? { qemuPath: resolve(path.replace(/^~(?=$|\/)/, process.env['HOME'] ?? '~')) } : {}),
      ...(accel === 'kvm' || accel === 'tcg' ? { accel } : {}),
    };
  }

  /** Whether the library was asked for since the last settings change (activation must not open it). */
  get opened(): boolean {
    return this.opening !== undefined;
  }

  /** The open library (opened, recovered and watched on first use). */
  library(): Promise<Library> {
    const dir = this.dir;
    const qemu = this.qemu;
    const key = `${dir}\n${JSON.stringify(qemu)}`;
    if (this.opening?.key !== key) {
      const library = Library.open(dir, { qemu }).then(
        async (lib) => {
          await this.rewatch(lib);
          return lib;
        },
        (e: unknown) => {
          // Try again on the next call: the folder may become readable.
          if (this.opening?.library === library) this.opening = undefined;
          throw e;
        },
      );
      this.opening = { key, library };
    }
    return this.opening.library;
  }

  /**
   * Watches the library folder and every machine folder (machines come and go, so after every change), unreadable
   * ones too: the tree shows such a machine again as soon as its manifest is fixed.
   */
  private async rewatch(lib: Library): Promise<LibraryScan | undefined> {
    try {
      const scan = await lib.scan();
      this.watcher.watch([lib.dir, ...scan.machines.map((m) => m.folder), ...scan.broken.map((b) => b.folder)]);
      return scan;
    } catch {
      this.watcher.watch([lib.dir]);
      return undefined;
    }
  }

  /** The scan that finds the folders to watch goes with the event: the tree compares it with what it shows. */
  private async rewatchThenFire(folders: ReadonlySet<string>): Promise<void> {
    const opening = this.opening;
    const scan = opening ? await opening.library.then((lib) => this.rewatch(lib)).catch(() => undefined) : undefined;
    // Read from another library when the setting changed meanwhile: the tree then reads for itself.
    this.changed.fire({ origin: 'disk', folders, scan: this.opening === opening ? scan : undefined });
  }

  /** For changes this window just made: refresh now instead of waiting for the file-system events. */
  notifyChanged(): void {
    this.changed.fire({ origin: 'window' });
  }

  dispose(): void {
    this.watcher.close();
    this.changed.dispose();
    for (const s of this.subscriptions) s.dispose();
  }
}
