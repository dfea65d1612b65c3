// A machine's screen, running inside the webview (browser, no Node, no vscode module): noVNC's RFB client on a
// channel object that carries the RFB bytes as messages to and from the extension (../relay.ts), which holds the
// real connection to QEMU's VNC socket. Bundled on its own into dist/webview/display.js.
import RFB, { type RfbChannel } from '@novnc/novnc';
import type { DisplayStatus, FromDisplayWebview, ToDisplayWebview } from '../protocol';

interface PersistedDisplay {
  fit: boolean;
}

interface VsCodeApi {
  postMessage(message: FromDisplayWebview): void;
  getState(): PersistedDisplay | undefined;
  setState(state: PersistedDisplay): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const target = byId<HTMLDivElement>('rfb');
const notice = byId<HTMLDivElement>('notice');
const last = byId<HTMLImageElement>('last');
const statusLine = byId<HTMLSpanElement>('status');
const scaleButton = byId<HTMLButtonElement>('scale');
const cadButton = byId<HTMLButtonElement>('cad');

let fit = vscode.getState()?.fit ?? true;
let status: DisplayStatus | null = null;
let rfb: RFB | null = null;
let channel: RelayChannel | null = null;
let rfbState: 'none' | 'connecting' | 'connected' | 'disconnected' = 'none';
/** Why this page ended the last session itself (a screen too large to show), until a session connects. */
let problem: string | null = null;
let sizeWatch: MutationObserver | null = null;

/** A screen larger than this is refused: QEMU's largest modes are far smaller, a bigger one is a broken stream. */
const MAX_SCREEN_PIXELS = 8192 * 8192;

/** Bytes as they arrive through postMessage: a Uint8Array, or (older hosts) an ArrayBuffer or a plain array. */
function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (Array.isArray(v)) return Uint8Array.from(v as number[]);
  if (typeof v === 'object' && v !== null) return Uint8Array.from(Object.values(v as Record<string, number>));
  return new Uint8Array(0);
}

/** A WebSocket-like object for noVNC (it needs these members); its far end is the extension's relay. */
class RelayChannel implements RfbChannel {
  readyState: string = 'open';
  binaryType = 'arraybuffer';
  protocol = '';
  onopen: ((e: Event) => void) | null = null;
  onmessage: ((e: { data: ArrayBuffer }) => void) | null = null;
  onclose: ((e: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;

  constructor(readonly session: number) {}

  send(data: Uint8Array): void {
    if (this.readyState !== 'open') return;
    // noVNC reuses its send buffer: the message gets a copy.
    vscode.postMessage({ type: 'data', session: this.session, bytes: data.slice() });
  }

  close(): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    vscode.postMessage({ type: 'close', session: this.session });
    this.onclose?.({ code: 1000, reason: '', wasClean: true });
  }

  /** Server bytes from the relay; acknowledged once noVNC has taken them, so the relay sends more. */
  deliver(bytes: Uint8Array): void {
    if (this.readyState !== 'open') return;
    const data = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : (bytes.slice().buffer as ArrayBuffer);
    try {
      this.onmessage?.({ data });
    } finally {
      vscode.postMessage({ type: 'ack', session: this.session, bytes: bytes.byteLength });
    }
  }

  /** The relay's connection ended (the machine stopped, or is being reverted). */
  ended(reason: string | null): void {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    this.onclose?.({ code: 1006, reason: reason ?? '', wasClean: false });
  }
}

function canvas(): HTMLCanvasElement | null {
  return target.querySelector('canvas');
}

/** Keeps the last frame, dimmed, while the tab waits for the machine to come back. */
function keepLastFrame(): void {
  const c = canvas();
  if (c === null || c.width === 0 || c.height === 0) return;
  try {
    last.src = c.toDataURL('image/png');
    last.hidden = false;
  } catch {
    // a canvas too large to encode: show nothing rather than fail
  }
}

function startClient(session: number): void {
  stopClient();
  channel = new RelayChannel(session);
  const client = new RFB(target, channel, { shared: true });
  rfb = client;
  rfbState = 'connecting';
  client.scaleViewport = fit;
  client.clipViewport = false;
  client.resizeSession = false;
  client.focusOnClick = true;
  client.background = '#000';
  // noVNC sizes its canvas as the server says (ServerInit, DesktopSize): refuse an absurd size before drawing.
  sizeWatch = new MutationObserver(() => {
    const c = canvas();
    if (c === null || rfb !== client || c.width * c.height <= MAX_SCREEN_PIXELS) return;
    problem = `The machine announced a ${c.width}×${c.height} screen, larger than the tab shows; trying again…`;
    c.width = 0;
    c.height = 0;
    channel?.close();
    render();
  });
  sizeWatch.observe(target, { subtree: true, childList: true, attributes: true, attributeFilter: ['width', 'height'] });
  client.addEventListener('connect', () => {
    if (rfb !== client) return;
    problem = null;
    rfbState = 'connected';
    last.hidden = true;
    render();
    client.focus();
  });
  client.addEventListener('disconnect', () => {
    if (rfb !== client) return;
    rfbState = 'disconnected';
    render();
  });
  client.addEventListener('securityfailure', () => {
    if (rfb === client) rfbState = 'disconnected';
    render();
  });
  render();
}

function stopClient(): void {
  sizeWatch?.disconnect();
  sizeWatch = null;
  const old = rfb;
  rfb = null;
  channel?.ended(null);
  channel = null;
  if (old !== null) {
    try {
      old.disconnect();
    } catch {
      // already disconnected
    }
  }
}

function render(): void {
  if (status === null) return;
  const s = status;
  const live = s.connected && rfbState === 'connected';
  statusLine.textContent = live ? `${s.machineName}: ${s.power}` : `${s.machineName}: ${s.power}. ${s.message ?? (rfbState === 'connecting' ? 'Connecting…' : '')}`.trim();
  notice.hidden = problem === null && (live || (s.connected && rfbState === 'connecting'));
  notice.textContent = problem ?? s.message ?? '';
  cadButton.disabled = !live;
  scaleButton.textContent = fit ? (scaleButton.dataset['actual'] ?? '1:1') : (scaleButton.dataset['fit'] ?? 'Scale to Fit');
  scaleButton.title = fit ? (scaleButton.dataset['actualTitle'] ?? '') : (scaleButton.dataset['fitTitle'] ?? '');
  document.body.classList.toggle('live', live);
}

scaleButton.addEventListener('click', () => {
  fit = !fit;
  vscode.setState({ fit });
  if (rfb !== null) rfb.scaleViewport = fit;
  document.body.classList.toggle('actual-size', !fit);
  render();
  rfb?.focus();
});
cadButton.addEventListener('click', () => {
  rfb?.sendCtrlAltDel();
  rfb?.focus();
});
document.body.classList.toggle('actual-size', !fit);

window.addEventListener('message', (event: MessageEvent<ToDisplayWebview>) => {
  const m = event.data;
  switch (m.type) {
    case 'status':
      status = m.status;
      render();
      return;
    case 'open':
      startClient(m.session);
      return;
    case 'data':
      if (channel?.session === m.session) channel.deliver(toBytes(m.bytes));
      else vscode.postMessage({ type: 'ack', session: m.session, bytes: toBytes(m.bytes).byteLength });
      return;
    case 'close':
      if (channel?.session === m.session) {
        keepLastFrame();
        channel.ended(m.reason);
        rfbState = 'disconnected';
        render();
      }
      return;
  }
});

vscode.postMessage({ type: 'ready' });
