// The part of noVNC's RFB client (@novnc/novnc 1.x, core/rfb.js) this webview uses; the package ships no types.
declare module '@novnc/novnc' {
  /** A WebSocket-like channel: noVNC's Websock checks for these members and drives the rest itself. */
  export interface RfbChannel {
    readyState: string | number;
    binaryType: string;
    protocol: string;
    send(data: Uint8Array): void;
    close(): void;
    onopen: ((e: Event) => void) | null;
    onmessage: ((e: { data: ArrayBuffer }) => void) | null;
    onclose: ((e: { code: number; reason: string; wasClean: boolean }) => void) | null;
    onerror: ((e: Event) => void) | null;
  }

  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | RfbChannel, options?: { shared?: boolean });
    scaleViewport: boolean;
    clipViewport: boolean;
    resizeSession: boolean;
    focusOnClick: boolean;
    showDotCursor: boolean;
    qualityLevel: number;
    compressionLevel: number;
    background: string;
    disconnect(): void;
    sendCtrlAltDel(): void;
    focus(): void;
  }
}
