// Fixtures for the image cache suites: disk images made by QEMU's own tools (and the compressors, genisoimage),
// a real HTTP(S) server on 127.0.0.1 that counts the requests it answers, and a view of what a cache folder holds.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { qemuImg, qemuIo, requireTool, run } from '../../support/qemu';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** The tools the fixtures are made with; a missing one fails the suite (never skipped), naming its Debian package. */
export function requireImageTools(): void {
  requireTool('qemu-img');
  requireTool('qemu-io');
  const packages: Record<string, string> = { genisoimage: 'genisoimage', xz: 'xz-utils', gzip: 'gzip', bzip2: 'bzip2', zstd: 'zstd', openssl: 'openssl', sha256sum: 'coreutils' };
  for (const [tool, pkg] of Object.entries(packages)) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed: install Debian's ${pkg} (apt-get install -y ${pkg}).`);
  }
}

/** A 64 MiB qcow2 with 3 MiB of data written by qemu-io: a small stand-in for a cloud image. */
export function makeQcow2(path: string): void {
  qemuImg('create', '-q', '-f', 'qcow2', path, String(64 * MiB));
  qemuIo(path, ['write -q -P 0xab 0 1M', 'write -q -P 0xcd 8M 2M']);
}

/** A 4 MiB raw disk whose first sector carries an MBR boot signature, written by qemu-io. */
export function makeRawMbr(path: string, size = 4 * MiB): void {
  qemuImg('create', '-q', '-f', 'raw', path, String(size));
  qemuIo(path, ['write -q -P 0x55 510 1', 'write -q -P 0xaa 511 1', 'write -q -P 0x11 1M 64k'], 'raw');
}

export function sha256Of(path: string): string {
  return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]!;
}

/** A self-signed certificate for 127.0.0.1, made by openssl. */
export function makeCertificate(dir: string): { key: string; cert: string; certFile: string } {
  const keyFile = `${dir}/key.pem`;
  const certFile = `${dir}/cert.pem`;
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), certFile };
}

export interface ServeOptions {
  /** Send Content-Length (default true). */
  length?: boolean;
  contentType?: string;
  /** Pause between 64 KiB chunks. */
  chunkDelayMs?: number;
  /** Send this many bytes of the body, then nothing more while keeping the connection open. */
  stallAfter?: number;
  /** Send this many bytes of the body, then close the connection. */
  cutAfter?: number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A real HTTP (or HTTPS) server on 127.0.0.1 that counts the requests each path gets. */
export class ImageServer {
  private readonly routes = new Map<string, Handler>();
  private readonly counts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: http.Server,
    readonly origin: string,
  ) {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(tls?: { key: string; cert: string }): Promise<ImageServer> {
    let self: ImageServer | null = null;
    const handler: Handler = (req, res) => self!.handle(req, res);
    const server = tls !== undefined ? https.createServer(tls, handler) : http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    self = new ImageServer(server, `${tls !== undefined ? 'https' : 'http'}://127.0.0.1:${port}`);
    return self;
  }

  url(path: string): string {
    return this.origin + path;
  }

  /** Requests answered on `path` so far. */
  count(path: string): number {
    return this.counts.get(path) ?? 0;
  }

  total(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c;
    return n;
  }

  route(path: string, handler: Handler): void {
    this.routes.set(path, handler);
  }

  serveBytes(path: string, body: Buffer, options: ServeOptions = {}): void {
    this.route(path, (_req, res) => {
      const headers: http.OutgoingHttpHeaders = { 'content-type': options.contentType ?? 'application/octet-stream', etag: `"${body.length}"` };
      if (options.length !== false) headers['content-length'] = body.length;
      res.writeHead(200, headers);
      const end = Math.min(body.length, options.stallAfter ?? options.cutAfter ?? body.length);
      let offset = 0;
      const next = (): void => {
        if (res.destroyed) return;
        if (offset >= end) {
          if (options.cutAfter !== undefined) res.socket?.destroy();
          else if (options.stallAfter === undefined) res.end();
          return; // a stall: keep the connection open, send nothing
        }
        const chunk = body.subarray(offset, Math.min(end, offset + 64 * KiB));
        offset += chunk.length;
        const more = res.write(chunk);
        const go = (): void => {
          if (options.chunkDelayMs !== undefined) this.later(next, options.chunkDelayMs);
          else next();
        };
        if (more) go();
        else res.once('drain', go);
      };
      next();
    });
  }

  serveFile(path: string, file: string, options: ServeOptions = {}): void {
    this.serveBytes(path, readFileSync(file), options);
  }

  redirect(path: string, location: string, status = 302): void {
    this.route(path, (_req, res) => {
      res.writeHead(status, { location });
      res.end();
    });
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = new URL(req.url ?? '/', this.origin).pathname;
    this.counts.set(path, (this.counts.get(path) ?? 0) + 1);
    const handler = this.routes.get(path);
    if (handler === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    handler(req, res);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A port on 127.0.0.1 nobody listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** What a cache folder holds: each name with its size, and the index's text. Compared before and after a failure. */
export function cacheState(dir: string): string {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return '(no folder)';
  }
  return names.map((n) => (n === 'index.json' ? `index.json: ${readFileSync(`${dir}/${n}`, 'utf8')}` : `${n} ${statSync(`${dir}/${n}`).size}`)).join('\n');
}

export function writeBytes(path: string, parts: { offset: number; bytes: Buffer | string }[], size: number): void {
  const buf = Buffer.alloc(size);
  for (const p of parts) (typeof p.bytes === 'string' ? Buffer.from(p.bytes, 'latin1') : p.bytes).copy(buf, p.offset);
  writeFileSync(path, buf);
}
