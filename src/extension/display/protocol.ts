// The messages between a display tab (extension side) and its webview, shared by both sides. The RFB byte stream
// of one connection to the machine's VNC socket is a session: bytes of an older session are dropped on arrival.
export const DISPLAY_VIEW_TYPE = 'vmsnap.display';

/** What the tab says above the screen. */
export interface DisplayStatus {
  machineName: string;
  /** The machine's power state in words (running, paused, off), or unknown when it could not be read. */
  power: string;
  /** Connected to the VNC server, or waiting for it (with why, in one sentence). */
  connected: boolean;
  message: string | null;
}

export type ToDisplayWebview =
  | { type: 'status'; status: DisplayStatus }
  /** A new connection to the VNC server: start an RFB client on it. */
  | { type: 'open'; session: number }
  | { type: 'data'; session: number; bytes: Uint8Array }
  /** The connection ended (the machine stopped or is being reverted): the tab waits for the next one. */
  | { type: 'close'; session: number; reason: string | null };

export type FromDisplayWebview =
  | { type: 'ready' }
  | { type: 'data'; session: number; bytes: Uint8Array }
  /** The webview consumed `bytes` of a session's data: the host may send more (flow control). */
  | { type: 'ack'; session: number; bytes: number }
  /** The RFB client closed its side (an error in the stream, or the user asked to reconnect). */
  | { type: 'close'; session: number };

export function isFromDisplayWebview(m: unknown): m is FromDisplayWebview {
  if (typeof m !== 'object' || m === null) return false;
  const t = (m as { type?: unknown }).type;
  return t === 'ready' || t === 'data' || t === 'ack' || t === 'close';
}
