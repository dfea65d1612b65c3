// A machine's screen in an editor tab (extension side): one webview per tab, several tabs may show one machine.
// The RFB byte stream of QEMU's VNC unix socket is relayed through this process (./relay.ts), so the webview needs
// no network access to the host: it works in code-server and remote windows alike. When the machine stops or is
// reverted, the socket goes away; the tab says so and connects again once the machine runs with a display.
import * as vscode from 'vscode';
import { connect, type Socket } from 'node:net';
import type { Library } from '../../engine/machine';
import type { LibraryService } from '../library-service';
import { errorMessage } from '../ui/errors';
import { escapeHtml, webviewOptions, webviewPage } from '../ui/webview-page';
import { DISPLAY_VIEW_TYPE, isFromDisplayWebview, type DisplayStatus, type FromDisplayWebview, type ToDisplayWebview } from './protocol';
import { RfbRelay } from './relay';

/** How often a tab without a connection looks for the machine's VNC server again. */
const RECONNECT_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;

export class DisplayPanel implements vscode.Disposable {
  private static readonly open = new Set<DisplayPanel>();
  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private disposed = false;
  private session = 0;
  private relay: RfbRelay | null = null;
  private connecting = false;
  private retry: NodeJS.Timeout | undefined;
  /** When the current session opened, and the wait before the next attempt when sessions keep failing at once. */
  private openedAt = 0;
  private backoffMs = 200;
  private status: DisplayStatus;

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly service: LibraryService,
    extensionUri: vscode.Uri,
    readonly machineId: string,
    machineName: string,
  ) {
    DisplayPanel.open.add(this);
    this.status = { machineName, power: 'unknown', connected: false, message: vscode.l10n.t('Connecting…') };
    panel.webview.html = html(panel.webview, extensionUri, machineName);
    panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'vmsnap.svg');
    this.updateTitle();
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: unknown) => {
        if (isFromDisplayWebview(m)) this.receive(m);
      }),
      // A hidden webview is torn down (its RFB client with it); it says 'ready' again when shown.
      panel.onDidChangeViewState((e) => {
        if (!e.webviewPanel.visible) this.pause();
      }),
      service.onDidChange(() => void this.refreshPower()),
    );
    void this.refreshPower();
  }

  /** A new tab on the machine's screen (another tab on the same machine is fine: VNC shares the screen). */
  static show(service: LibraryService, extensionUri: vscode.Uri, machine: { id: string; name: string }): DisplayPanel {
    const panel = vscode.window.createWebviewPanel(DISPLAY_VIEW_TYPE, machine.name, vscode.ViewColumn.Active, webviewOptions(extensionUri));
    return new DisplayPanel(panel, service, extensionUri, machine.id, machine.name);
  }

  static disposeAll(): void {
    for (const p of [...DisplayPanel.open]) p.dispose();
  }

  get connected(): boolean {
    return this.relay !== null;
  }

  private receive(m: FromDisplayWebview): void {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post({ type: 'status', status: this.status });
        // A webview shown again starts with a fresh client: the old connection is of no use to it.
        this.relay?.close();
        void this.connect();
        return;
      case 'data':
        if (m.session === this.session) this.relay?.toServer(m.bytes);
        return;
      case 'ack':
        if (m.session === this.session) this.relay?.ack(m.bytes);
        return;
      case 'close':
        if (m.session === this.session) this.relay?.close();
        return;
    }
  }

  /** Connects to the machine's VNC socket; while it cannot, says why and tries again every second. */
  private async connect(): Promise<void> {
    if (this.disposed || !this.ready || this.relay !== null || this.connecting) return;
    this.connecting = true;
    clearTimeout(this.retry);
    try {
      const lib = await this.service.library();
      const path = await lib.displaySocket(this.machineId);
      const socket = await openSocket(path);
      if (this.disposed || !this.ready) {
        socket.destroy();
        return;
      }
      const session = ++this.session;
      this.openedAt = Date.now();
      this.post({ type: 'open', session });
      this.relay = new RfbRelay(
        socket,
        (bytes) => this.post({ type: 'data', session, bytes }),
        (reason) => this.ended(session, reason),
      );
      await this.setStatus(lib, true, null);
    } catch (e) {
      // Tried again every second while the machine is off: only a new reason is posted; refreshPower() follows the power state.
      const message = errorMessage(e);
      if (this.status.connected || this.status.message !== message) {
        this.status = { ...this.status, connected: false, message };
        this.post({ type: 'status', status: this.status });
      }
      this.scheduleRetry();
    } finally {
      this.connecting = false;
    }
  }

  private ended(session: number, reason: string | null): void {
    if (session !== this.session) return;
    this.relay = null;
    this.post({ type: 'close', session, reason });
    if (this.disposed) return;
    // A connection that fails at once again and again (a stream the client cannot take) is retried ever more slowly.
    this.backoffMs = Date.now() - this.openedAt < 3000 ? Math.min(this.backoffMs * 2, 10_000) : 200;
    void this.service
      .library()
      .then((lib) => this.setStatus(lib, false, reason ?? vscode.l10n.t('The connection to the screen ended; waiting for the machine…')))
      .catch(() => undefined)
      .finally(() => this.scheduleRetry(this.backoffMs));
  }

  private scheduleRetry(ms = RECONNECT_MS): void {
    if (this.disposed || !this.ready) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.connect(), ms);
  }

  /** The webview went away (hidden): nothing to relay to until it is shown again. */
  private pause(): void {
    this.ready = false;
    clearTimeout(this.retry);
    this.relay?.close();
  }

  private async setStatus(lib: Library | null, connected: boolean, message: string | null): Promise<void> {
    const power = lib === null ? { name: null, state: 'unknown' } : await powerOf(lib, this.machineId);
    this.status = { ...this.status, ...(power.name === null ? {} : { machineName: power.name }), power: power.state, connected, message };
    this.updateTitle();
    this.post({ type: 'status', status: this.status });
  }

  private async refreshPower(): Promise<void> {
    if (this.disposed) return;
    const lib = await this.service.library().catch(() => null);
    if (lib === null) return;
    const power = await powerOf(lib, this.machineId);
    if (power.state === this.status.power && (power.name === null || power.name === this.status.machineName)) return;
    this.status = { ...this.status, ...(power.name === null ? {} : { machineName: power.name }), power: power.state };
    this.updateTitle();
    this.post({ type: 'status', status: this.status });
    if (!this.connected) this.scheduleRetry(0);
  }

  private updateTitle(): void {
    this.panel.title = vscode.l10n.t('{0} ({1})', this.status.machineName, powerWords(this.status.power));
  }

  private post(m: ToDisplayWebview): void {
    if (this.disposed) return;
    void this.panel.webview.postMessage(m);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    DisplayPanel.open.delete(this);
    clearTimeout(this.retry);
    this.relay?.close();
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

function powerWords(power: string): string {
  switch (power) {
    case 'running':
      return vscode.l10n.t('running');
    case 'paused':
      return vscode.l10n.t('paused');
    case 'off':
      return vscode.l10n.t('off');
    default:
      return vscode.l10n.t('unknown');
  }
}

/** The machine's name and power state from the library's listing (pidfile and process, no QMP, no lock). */
async function powerOf(lib: Library, id: string): Promise<{ name: string | null; state: string }> {
  const m = (await lib.list().catch(() => [])).find((x) => x.id === id);
  return m === undefined ? { name: null, state: 'unknown' } : { name: m.name, state: m.powerState };
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(vscode.l10n.t('The machine\'s display socket {0} did not answer within {1} s.', path, CONNECT_TIMEOUT_MS / 1000)));
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? vscode.l10n.t('The machine\'s display socket is gone; waiting for the machine to run again…') : e.message));
    });
  });
}

function html(webview: vscode.Webview, extensionUri: vscode.Uri, machineName: string): string {
  const esc = escapeHtml;
  return webviewPage(webview, extensionUri, {
    css: 'display',
    js: 'display',
    title: machineName,
    body: `<header id="bar">
  <span id="status" role="status" aria-live="polite">${esc(vscode.l10n.t('Connecting…'))}</span>
  <span class="spacer"></span>
  <button id="scale" type="button" data-actual="${esc(vscode.l10n.t('1:1'))}" data-actual-title="${esc(vscode.l10n.t('Show the screen at its own size (scroll to see all of it)'))}" data-fit="${esc(vscode.l10n.t('Scale to Fit'))}" data-fit-title="${esc(vscode.l10n.t('Scale the screen to fit the tab'))}">${esc(vscode.l10n.t('1:1'))}</button>
  <button id="cad" type="button" title="${esc(vscode.l10n.t('Send Ctrl+Alt+Del to the guest'))}">${esc(vscode.l10n.t('Ctrl+Alt+Del'))}</button>
</header>
<main id="screen" aria-label="${esc(vscode.l10n.t('Screen of {0}', machineName))}">
  <img id="last" alt="" hidden>
  <div id="rfb"></div>
  <div id="notice" hidden></div>
</main>`,
  });
}
