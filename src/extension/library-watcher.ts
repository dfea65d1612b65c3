// File-system watching of the library and its machine folders, debounced into one call per burst.
import { watch, type FSWatcher } from 'node:fs';
import { basename } from 'node:path';
import { RUNTIME_LOG_FILE_NAMES } from '../engine/runtime';

/** Files a running machine writes to continuously: not changes of the library. */
const QUIET_FILES = new Set(RUNTIME_LOG_FILE_NAMES);

/**
 * Watches the library folder and every machine folder (inside it or registered outside) for changes made by
 * anyone: this window, another window, the `vmsnap` CLI. Bursts (a clone writes thousands of clusters) become one
 * call, at most `maxWaitMs` after the burst began. One plain watch per folder: Node's recursive watching on Linux
 * walks and re-walks whole trees, which a library of thousands of layer files makes slow.
 */
export class LibraryWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private firstAt = 0;
  /** The watched folders with changes since the last call. */
  private changedFolders = new Set<string>();

  constructor(
    private readonly onChange: (folders: ReadonlySet<string>) => void,
    private readonly quietMs = 200,
    private readonly maxWaitMs = 1000,
  ) {}

  /** Watches exactly these folders (the library folder and the machine folders), keeping unchanged watches. */
  watch(folders: string[]): void {
    const wanted = new Set(folders);
    for (const [folder, w] of this.watchers) {
      if (!wanted.has(folder)) {
        w.close();
        this.watchers.delete(folder);
      }
    }
    for (const folder of wanted) {
      if (this.watchers.has(folder)) continue;
      try {
        const w = watch(folder, (_event, name) => this.seen(folder, name === null ? null : String(name)));
        // A folder deleted under the watch: the next refresh drops it.
        w.on('error', () => {
          w.close();
          this.watchers.delete(folder);
          this.seen(folder, null);
        });
        this.watchers.set(folder, w);
      } catch {
        // Gone between listing and watching: the next refresh catches up.
      }
    }
  }

  private seen(folder: string, name: string | null): void {
    // Lock files come and go around every operation without changing what the tree shows.
    if (name !== null) {
      const file = basename(name);
      if (file.endsWith('.lock') || file.includes('.lock.stale-')) return;
      // A running guest's serial output and QEMU's messages grow all the time; the tree shows neither.
      if (QUIET_FILES.has(file)) return;
    }
    this.changedFolders.add(folder);
    const now = Date.now();
    if (this.timer === undefined) this.firstAt = now;
    else clearTimeout(this.timer);
    const wait = Math.min(this.quietMs, Math.max(0, this.firstAt + this.maxWaitMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const folders = this.changedFolders;
      this.changedFolders = new Set();
      this.onChange(folders);
    }, wait);
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
