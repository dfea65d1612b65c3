// The comparison table's panel (extension side): one per library, fed live, restored after a window reload.
import * as vscode from 'vscode';
import { WebviewProbes } from '../ui/webview-probes';
import type { Library } from '../../engine/machine';
import type { LibraryService } from '../library-service';
import { thumbnailDataUri } from '../thumbnail-uri';
import { errorMessage } from '../ui/errors';
import { escapeHtml, webviewOptions, webviewPage } from '../ui/webview-page';
import { VIEW_TYPE, isFromWebview, type CompareState, type FromWebview, type PersistedState, type RowAction, type ToWebview } from './protocol';

type ProbeReply = Extract<FromWebview, { type: 'probeReply' }>;

/**
 * The comparison table of a machine's family, one panel per library: opening it again reveals it (and selects the
 * machine). It follows the library live and survives a window reload (the serializer below).
 */
export class ComparePanel implements vscode.Disposable {
  private static readonly panels = new Map<string, ComparePanel>();
  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private focusId: string | null = null;
  private readonly probes = new WebviewProbes<ProbeReply>('comparison');
  /** Probes asked before the webview's script listens: a message posted then would be lost. */
  private readonly probesWaiting: number[] = [];
  private pushing: Promise<void> = Promise.resolve();
  private readonly thumbnails = new Map<string, string>();

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly service: LibraryService,
    extensionUri: vscode.Uri,
    readonly libraryDir: string,
    private machineId: string | null,
  ) {
    ComparePanel.panels.set(libraryDir, this);
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = html(panel.webview, extensionUri);
    panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'vmsnap.svg');
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: unknown) => {
        if (isFromWebview(m)) void this.receive(m);
      }),
      service.onDidChange(() => this.push()),
      // A hidden webview is torn down, and says 'ready' again once it is shown and listening.
      panel.onDidChangeViewState((e) => {
        if (!e.webviewPanel.visible) this.ready = false;
      }),
    );
  }

  /** Opens (or reveals) the library's panel on a machine's family, selecting a row if given. */
  static async show(service: LibraryService, extensionUri: vscode.Uri, machineId: string | null, focusId: string | null = null): Promise<ComparePanel> {
    const dir = service.dir;
    let panel = ComparePanel.panels.get(dir);
    if (panel) {
      panel.panel.reveal(undefined, false);
    } else {
      const p = vscode.window.createWebviewPanel(VIEW_TYPE, vscode.l10n.t('Snapshots and Clones'), vscode.ViewColumn.Active, webviewOptions(extensionUri));
      panel = new ComparePanel(p, service, extensionUri, dir, machineId);
    }
    if (machineId !== null) panel.machineId = machineId;
    panel.focusId = focusId;
    panel.push();
    return panel;
  }

  static revive(panel: vscode.WebviewPanel, service: LibraryService, extensionUri: vscode.Uri, state: PersistedState | undefined): ComparePanel {
    const dir = state?.libraryDir ?? service.dir;
    ComparePanel.panels.get(dir)?.panel.dispose();
    return new ComparePanel(panel, service, extensionUri, dir, state?.machineId ?? null);
  }

  static current(libraryDir: string): ComparePanel | undefined {
    return ComparePanel.panels.get(libraryDir);
  }

  get selectedMachine(): string | null {
    return this.machineId;
  }

  /** Handles one message from the webview (public so tests can drive the protocol's action path directly). */
  async receive(m: FromWebview): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.push();
        for (const requestId of this.probesWaiting.splice(0)) void this.post({ type: 'probe', requestId });
        return;
      case 'selectMachine':
        this.machineId = m.machineId;
        this.focusId = null;
        this.push();
        return;
      case 'action': {
        let reply: ToWebview;
        try {
          const result: unknown = await vscode.commands.executeCommand(commandFor(m.action), { machine: m.machineId, ...(m.snapshotId ? { snapshot: m.snapshotId } : {}) });
          reply = { type: 'reply', requestId: m.requestId, ok: result !== undefined, message: null };
        } catch (e) {
          reply = { type: 'reply', requestId: m.requestId, ok: false, message: errorMessage(e) };
        }
        await this.post(reply);
        return;
      }
      case 'probeReply':
        this.probes.answer(m);
        return;
    }
  }

  /** What the webview shows right now: its table headers and cells as text. */
  probe(timeoutMs = 10_000): Promise<ProbeReply> {
    return this.probes.ask((requestId) => {
      if (this.ready) void this.post({ type: 'probe', requestId });
      else this.probesWaiting.push(requestId);
    }, timeoutMs);
  }

  /** Sends the current state once the webview said it is ready; pushes are serialised so the last one wins. */
  push(): void {
    if (!this.ready) return;
    this.pushing = this.pushing.then(async () => {
      const state = await this.state();
      this.panel.title = state.machineId ? vscode.l10n.t('Snapshots and Clones: {0}', state.machines.find((m) => m.id === state.machineId)?.name ?? '') : vscode.l10n.t('Snapshots and Clones');
      await this.post({ type: 'state', state });
    });
  }

  /** Resolves when every push asked for so far has been posted. */
  settled(): Promise<void> {
    return this.pushing;
  }

  private async state(): Promise<CompareState> {
    const base: CompareState = { libraryDir: this.libraryDir, machines: [], machineId: null, rows: [], trees: [], focusId: this.focusId, error: null };
    try {
      const lib: Library = await this.service.library();
      const machines = await lib.list();
      base.machines = machines.map((m) => ({ id: m.id, name: m.name }));
      if (!machines.some((m) => m.id === this.machineId)) this.machineId = machines[0]?.id ?? null;
      if (this.machineId === null) return base;
      const rows = await lib.compare(this.machineId);
      const family = [this.machineId, ...rows.filter((r) => r.kind !== 'snapshot' && r.machineId !== this.machineId).map((r) => r.machineId)];
      const trees = await Promise.all(family.map((id) => lib.snapshotTree(id)));
      return { ...base, machineId: this.machineId, rows, trees, thumbnails: await familyThumbnails(lib, family, this.thumbnails) };
    } catch (e) {
      return { ...base, error: errorMessage(e) };
    }
  }

  private async post(m: ToWebview): Promise<void> {
    await this.panel.webview.postMessage(m);
  }

  dispose(): void {
    if (ComparePanel.panels.get(this.libraryDir) === this) ComparePanel.panels.delete(this.libraryDir);
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }

  static disposeAll(): void {
    for (const p of [...ComparePanel.panels.values()]) p.dispose();
  }
}

/** Restores the panels that were open when the window reloaded. */
export function registerCompareSerializer(service: LibraryService, extensionUri: vscode.Uri): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(VIEW_TYPE, {
    deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
      ComparePanel.revive(panel, service, extensionUri, isPersisted(state) ? state : undefined);
      return Promise.resolve();
    },
  });
}

/**
 * The family's snapshot thumbnails as data: URIs, for the snapshot rows. `cache` (file -> data: URI) keeps those read
 * by earlier pushes: a snapshot's picture does not change, and only pictures still shown are kept.
 */
async function familyThumbnails(lib: Library, family: string[], cache: Map<string, string>): Promise<Record<string, string>> {
  const snapshots = (await Promise.all(family.map((id) => lib.show(id)))).flatMap((m) => m.snapshots);
  const out: Record<string, string> = {};
  const kept = new Map<string, string>();
  for (const s of snapshots) {
    if (s.thumbnail === null) continue;
    const uri = cache.get(s.thumbnail) ?? (await thumbnailDataUri(s.thumbnail));
    if (uri === null) continue;
    kept.set(s.thumbnail, uri);
    out[s.id] = uri;
  }
  cache.clear();
  for (const [k, v] of kept) cache.set(k, v);
  return out;
}

function isPersisted(s: unknown): s is PersistedState {
  return typeof s === 'object' && s !== null && typeof (s as PersistedState).libraryDir === 'string';
}

/** The command a row's (or the details panel's) button runs. */
export function commandFor(action: RowAction): string {
  switch (action) {
    case 'revert':
      return 'vmsnap.revert';
    case 'clone':
      return 'vmsnap.cloneSnapshot';
    case 'delete':
      return 'vmsnap.deleteSnapshot';
    case 'takeSnapshot':
      return 'vmsnap.takeSnapshot';
    case 'reveal':
      return 'vmsnap.revealMachine';
  }
}

function html(webview: vscode.Webview, extensionUri: vscode.Uri): string {
  return webviewPage(webview, extensionUri, {
    css: 'compare',
    js: 'compare',
    title: vscode.l10n.t('Snapshots and Clones'),
    body: `<main id="app" aria-live="polite"><p class="muted">${escapeHtml(vscode.l10n.t('Loading…'))}</p></main>`,
  });
}
