// Ports forwarded from the host into a machine (QEMU's user-mode network, `hostfwd`): always on 127.0.0.1, never
// on other interfaces, so nothing outside this computer reaches the guest. Host ports are chosen when QEMU starts.
import { createServer } from 'node:net';

export interface PortForward {
  /** The port inside the guest (22 for SSH). */
  guestPort: number;
  /** The host port wanted; when absent or taken, a free one is chosen. */
  hostPort?: number;
}

export interface BoundForward {
  guestPort: number;
  hostPort: number;
  /** The host port that was asked for but taken, when another one was chosen instead. */
  wanted?: number;
}

export const FORWARD_HOST = '127.0.0.1';

/** True when nothing listens on 127.0.0.1:port (we can bind it now). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: FORWARD_HOST, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the system says is free on 127.0.0.1 (bound to port 0 and released). */
export function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: FORWARD_HOST, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Host ports for the forwards: the wanted one when free, else the next free one above it (up to 100 tries), else
 * any free port. `avoid` holds ports that just failed to bind in QEMU (taken between our check and its bind).
 */
export async function bindForwards(forwards: readonly PortForward[], avoid: ReadonlySet<number> = new Set()): Promise<BoundForward[]> {
  const bound: BoundForward[] = [];
  const used = new Set(avoid);
  for (const f of forwards) {
    let hostPort: number | null = null;
    if (f.hostPort !== undefined) {
      for (let p = f.hostPort; p < Math.min(f.hostPort + 100, 65536); p++) {
        if (!used.has(p) && (await portIsFree(p))) {
          hostPort = p;
          break;
        }
      }
    }
    while (hostPort === null || used.has(hostPort)) hostPort = await anyFreePort();
    used.add(hostPort);
    bound.push(f.hostPort !== undefined && f.hostPort !== hostPort ? { guestPort: f.guestPort, hostPort, wanted: f.hostPort } : { guestPort: f.guestPort, hostPort });
  }
  return bound;
}

/** The `hostfwd=` options of QEMU's `-netdev user` for the bound forwards. */
export function hostfwdOptions(forwards: readonly BoundForward[]): string {
  return forwards.map((f) => `,hostfwd=tcp:${FORWARD_HOST}:${f.hostPort}-:${f.guestPort}`).join('');
}

export function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}
