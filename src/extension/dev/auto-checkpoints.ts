// Automatic checkpoints while VS Code is open: the schedule of every machine with a policy, and two triggers for
// the dev machine: the workspace's git branch changes, and a task named in vmsnap.autoCheckpoint.beforeTasks starts.
import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { AutoScheduler, isMachineError, systemClock, type AutoCheckpointOutcome, type AutoSchedulePort } from '../../engine/machine';
import type { LibraryService } from '../library-service';

/**
 * The schedule's first look at the library after start-up: activation itself reads nothing (the library opens on
 * first use), so a window nobody uses vmsnap in pays for the schedule only later, off the start-up path.
 */
const STARTUP_DELAY_MS = 20_000;
/** How often HEAD is read besides the file watcher's events (a watcher can miss a rename on some file systems). */
const HEAD_POLL_MS = 5000;

function settings(): { schedule: boolean; onBranchChange: boolean; beforeTasks: string[] } {
  const c = vscode.workspace.getConfiguration('vmsnap.autoCheckpoint');
  return {
    schedule: c.get<boolean>('runSchedule', true),
    onBranchChange: c.get<boolean>('onBranchChange', true),
    beforeTasks: c.get<string[]>('beforeTasks', []).filter((t) => typeof t === 'string'),
  };
}

/** "branch main", "detached HEAD at 1a2b3c4", from the text of .git/HEAD. */
function headLabel(text: string): string {
  const t = text.trim();
  const ref = /^ref:\s*refs\/heads\/(.+)$/.exec(t);
  if (ref) return `branch ${ref[1]}`;
  return /^[0-9a-f]{7,64}$/i.test(t) ? `detached HEAD at ${t.slice(0, 7)}` : t.slice(0, 80);
}

/**
 * The schedule runs in this window's extension host for as long as it is open; other windows and `vmsnap auto run`
 * may run theirs too (the machine lock and the due check under it make one checkpoint of several).
 *
 * Branch changes are seen by watching each workspace folder's `.git/HEAD` (git rewrites it on every checkout and
 * switch; commits on a branch leave it alone): a file watcher works with or without the built-in git extension,
 * also in code-server and remote workspaces, and HEAD is read again every few seconds in case an event is missed.
 * VS Code has no hook that runs before a task: onDidStartTask is the earliest moment, so the checkpoint is taken
 * as the task starts, in the first milliseconds of its process (a running machine's disks switch within
 * milliseconds; a task that changes the machine at once can race it).
 */
export class AutoCheckpoints implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly headWatchers: vscode.Disposable[] = [];
  private schedule: AbortController | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  /** Each workspace folder's HEAD as last read (folder URI -> text). */
  private readonly heads = new Map<string, string>();

  constructor(
    private readonly service: LibraryService,
    /** The dev machine's reference ('' for none): the one the triggers checkpoint. */
    private readonly devMachine: () => string,
    /** Fires when the dev machine may be another one (this Remote-SSH window's machine was found). */
    devMachineChanged: vscode.Event<void>,
  ) {
    this.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('vmsnap.autoCheckpoint') || e.affectsConfiguration('vmsnap.libraryFolder')) this.restart();
        else if (e.affectsConfiguration('vmsnap.devMachine')) this.watchHeads();
      }),
      devMachineChanged(() => this.watchHeads()),
      vscode.workspace.onDidChangeWorkspaceFolders(() => this.watchHeads()),
      vscode.tasks.onDidStartTask((e) => {
        const name = e.execution.task.name;
        if (settings().beforeTasks.includes(name)) void this.trigger(`before the task "${name}"`);
      }),
    );
    this.restart(STARTUP_DELAY_MS);
  }

  private restart(delayMs = 0): void {
    this.schedule?.abort();
    this.schedule = undefined;
    const s = settings();
    if (s.schedule) {
      const abort = new AbortController();
      this.schedule = abort;
      const port: AutoSchedulePort = {
        // No library folder yet: nothing to schedule, and the schedule does not create one.
        list: async () => (existsSync(this.service.dir) ? (await this.service.library()).list() : []),
        autoCheckpoint: async (ref, options) => (await this.service.library()).autoCheckpoint(ref, options),
      };
      const scheduler = new AutoScheduler(port, { onOutcome: (o) => this.report(o), onError: () => {} });
      // A library that cannot be read now is tried again at the next wake (onError); the tree says what is wrong with it.
      const wait = this.service.opened ? 0 : delayMs;
      void systemClock
        .sleep(wait, abort.signal)
        .then(() => scheduler.run(abort.signal))
        .catch(() => {});
    }
    this.watchHeads();
  }

  private watchHeads(): void {
    for (const w of this.headWatchers.splice(0)) w.dispose();
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
    // Without a dev machine a branch change has nothing to checkpoint: no watcher, no polling.
    if (!settings().onBranchChange || this.devMachine() === '') {
      this.heads.clear();
      return;
    }
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(folder, '.git/HEAD'));
      const check = (): void => void this.checkHead(folder.uri);
      this.headWatchers.push(watcher, watcher.onDidChange(check), watcher.onDidCreate(check));
      void this.readHead(folder.uri).then((text) => {
        if (text !== undefined && !this.heads.has(folder.uri.toString())) this.heads.set(folder.uri.toString(), text);
      });
    }
    this.poll = setInterval(() => {
      for (const folder of vscode.workspace.workspaceFolders ?? []) void this.checkHead(folder.uri);
    }, HEAD_POLL_MS);
  }

  private async readHead(folder: vscode.Uri): Promise<string | undefined> {
    try {
      return new TextDecoder().decode(await vscode.workspace.fs.readFile(vscode.Uri.joinPath(folder, '.git', 'HEAD'))).trim();
    } catch {
      // Not a repository (or .git is a file: a worktree or submodule, not followed).
      return undefined;
    }
  }

  private async checkHead(folder: vscode.Uri): Promise<void> {
    const text = await this.readHead(folder);
    const key = folder.toString();
    const before = this.heads.get(key);
    if (text === undefined || text === before) return;
    this.heads.set(key, text);
    // The first read only learns where HEAD is.
    if (before !== undefined) await this.trigger(`git ${headLabel(before)} → ${headLabel(text)}`);
  }

  /** An event checkpoint of the dev machine (if it has a policy); never shows an error for a skip. */
  private async trigger(reason: string): Promise<void> {
    const ref = this.devMachine();
    if (ref === '') return;
    try {
      const lib = await this.service.library();
      this.report(await lib.autoCheckpoint(ref, { trigger: { kind: 'event', reason } }));
    } catch (e) {
      if (!isMachineError(e)) throw e;
      // The dev machine is gone or unreadable: the status bar says so; a trigger stays silent.
    }
  }

  private report(o: AutoCheckpointOutcome): void {
    if (o.result === 'no-policy' || o.result === 'not-due') return;
    if (o.result === 'taken' || o.pruned.length > 0) this.service.notifyChanged();
    if (o.result === 'no-space' || o.result === 'failed') void vscode.window.showWarningMessage(o.message);
  }

  dispose(): void {
    this.schedule?.abort();
    if (this.poll !== undefined) clearInterval(this.poll);
    for (const d of [...this.headWatchers, ...this.subscriptions]) d.dispose();
  }
}
