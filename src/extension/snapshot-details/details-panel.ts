// The snapshot details panel, like VMware's Snapshot Manager's lower half: the picture of the screen at the
// snapshot, its name, description, date, size, what depends on it, and Revert / Clone / Delete buttons that run the
// tree's own commands (with their confirmations). One panel; "Show Snapshot Details" points it at a snapshot.
import * as vscode from 'vscode';
import type { MachineDetails, MachineSummary, SnapshotInfo } from '../../engine/machine';
import { formatBytes, formatDate } from '../format';
import type { LibraryService } from '../library-service';
import { thumbnailDataUri } from '../thumbnail-uri';
import { commandFor } from '../compare/compare-panel';
import { errorMessage } from '../ui/errors';
import { escapeHtml as esc, webviewOptions, webviewPage } from '../ui/webview-page';
import type { DetailsAction } from './protocol';

const DETAILS_VIEW_TYPE = 'vmsnap.snapshotDetails';

/** What the panel shows: read from the library each time it changes. */
interface DetailsState {
  machine: MachineDetails | null;
  snapshot: SnapshotInfo | null;
  /** The picture as a data: URI, or null (a placeholder). */
  picture: string | null;
  children: string[];
  linkedClones: string[];
  holdsCurrent: boolean;
  error: string | null;
}

function isAction(v: unknown): v is DetailsAction {
  return v === 'revert' || v === 'clone' || v === 'delete';
}

export class SnapshotDetailsPanel implements vscode.Disposable {
  private static instance: SnapshotDetailsPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private rendering: Promise<void> = Promise.resolve();
  /** The body last shown (the page around it differs only by its fresh nonce). */
  private body = '';

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly service: LibraryService,
    private readonly extensionUri: vscode.Uri,
    private machineId: string,
    private snapshotId: string,
  ) {
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: unknown) => {
        const action = (m as { type?: unknown; action?: unknown } | null)?.action;
        if ((m as { type?: unknown } | null)?.type === 'action' && isAction(action)) void this.act(action);
      }),
      service.onDidChange(() => this.render()),
    );
  }

  /** Opens (or reveals and re-targets) the panel on one snapshot. */
  static async show(service: LibraryService, extensionUri: vscode.Uri, machineId: string, snapshotId: string): Promise<SnapshotDetailsPanel> {
    let p = SnapshotDetailsPanel.instance;
    if (p) {
      p.machineId = machineId;
      p.snapshotId = snapshotId;
      p.panel.reveal(undefined, false);
    } else {
      // The picture is inlined as data:; the style and script are the extension's own media/ and dist/webview/ files.
      const panel = vscode.window.createWebviewPanel(DETAILS_VIEW_TYPE, vscode.l10n.t('Snapshot Details'), vscode.ViewColumn.Active, webviewOptions(extensionUri));
      p = new SnapshotDetailsPanel(panel, service, extensionUri, machineId, snapshotId);
      SnapshotDetailsPanel.instance = p;
    }
    p.render();
    await p.rendering;
    return p;
  }

  /** Runs a button's command on the snapshot shown (public: tests press the buttons through it). */
  async act(action: DetailsAction): Promise<unknown> {
    try {
      return await vscode.commands.executeCommand(commandFor(action), { machine: this.machineId, snapshot: this.snapshotId });
    } finally {
      this.render();
    }
  }

  render(): void {
    this.rendering = this.rendering.then(async () => {
      const state = await this.state();
      this.panel.title = state.snapshot ? vscode.l10n.t('Snapshot: {0}', state.snapshot.name) : vscode.l10n.t('Snapshot Details');
      // A library change elsewhere (another machine, a size) must not reload an unchanged page: no flicker, focus kept.
      const body = pageBody(state);
      if (body === this.body) return;
      this.body = body;
      this.panel.webview.html = webviewPage(this.panel.webview, this.extensionUri, {
        css: 'snapshot-details',
        js: 'snapshot-details',
        title: vscode.l10n.t('Snapshot Details'),
        body,
      });
    });
  }

  private async state(): Promise<DetailsState> {
    const empty: DetailsState = { machine: null, snapshot: null, picture: null, children: [], linkedClones: [], holdsCurrent: false, error: null };
    try {
      const lib = await this.service.library();
      const machine = await lib.show(this.machineId);
      const snapshot = machine.snapshots.find((s) => s.id === this.snapshotId) ?? null;
      if (snapshot === null) return { ...empty, machine };
      const all: MachineSummary[] = await lib.list();
      return {
        machine,
        snapshot,
        picture: await thumbnailDataUri(snapshot.thumbnail),
        children: machine.snapshots.filter((s) => s.parentId === snapshot.id).map((s) => s.name),
        linkedClones: snapshot.lockedBy.map((id) => all.find((m) => m.id === id)?.name ?? id),
        holdsCurrent: machine.current === snapshot.id,
        error: null,
      };
    } catch (e) {
      return { ...empty, error: errorMessage(e) };
    }
  }

  dispose(): void {
    if (SnapshotDetailsPanel.instance === this) SnapshotDetailsPanel.instance = undefined;
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

function pageBody(st: DetailsState): string {
  const s = st.snapshot;
  let body: string;
  if (st.error !== null) {
    body = `<p class="error">${esc(st.error)}</p>`;
  } else if (s === null) {
    body = `<p class="muted">${esc(vscode.l10n.t('This snapshot no longer exists (it was deleted).'))}</p>`;
  } else {
    const picture =
      st.picture !== null
        ? `<img id="thumbnail" src="${st.picture}" alt="${esc(vscode.l10n.t('The screen at the snapshot'))}">`
        : `<div id="thumbnail" class="placeholder" role="img" aria-label="${esc(vscode.l10n.t('No picture'))}">${esc(vscode.l10n.t('No picture of the screen'))}</div>`;
    const memory = s.hasMemory
      ? vscode.l10n.t('Yes: reverting brings the machine back running where it was')
      : s.takenWhileRunning
        ? vscode.l10n.t('No: disks only, taken while running')
        : vscode.l10n.t('No: taken while the machine was off');
    const depends = [
      ...st.children.map((n) => vscode.l10n.t('snapshot “{0}”', n)),
      ...st.linkedClones.map((n) => vscode.l10n.t('linked clone “{0}”', n)),
      ...(st.holdsCurrent ? [vscode.l10n.t('the current state (“You are here”)')] : []),
    ];
    const rows: [string, string][] = [
      [vscode.l10n.t('Machine'), st.machine!.name],
      [vscode.l10n.t('Created'), formatDate(s.createdAt)],
      [vscode.l10n.t('Size on disk'), `${formatBytes(s.sizeBytes)} (${vscode.l10n.t('its own changes')})`],
      [vscode.l10n.t('Memory'), memory],
      [vscode.l10n.t('Depends on it'), depends.length === 0 ? vscode.l10n.t('nothing') : depends.join(', ')],
      [vscode.l10n.t('Id'), s.id],
    ];
    const locked = s.lockedBy.length > 0;
    body = `<section class="snapshot">
<div class="picture">${picture}</div>
<div class="facts">
<h1 id="name">${esc(s.name)}</h1>
<p id="description" class="${s.description ? '' : 'muted'}">${esc(s.description || vscode.l10n.t('No description'))}</p>
<table>${rows.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
<div class="buttons">
<button data-action="revert">${esc(vscode.l10n.t('Revert to It'))}</button>
<button data-action="clone" class="secondary">${esc(vscode.l10n.t('Clone…'))}</button>
<button data-action="delete" class="secondary"${locked ? ` title="${esc(vscode.l10n.t('Locked: a linked clone depends on it'))}"` : ''}>${esc(vscode.l10n.t('Delete…'))}</button>
</div>
</div>
</section>`;
  }
  return `<main>${body}</main>`;
}
