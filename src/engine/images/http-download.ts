// Downloading one file over http(s) with Node's own client: redirects (never from https down to http), an idle
// timeout, cancellation, and every failure of the network turned into an ImageFetchError a person can act on.
// The bytes go to a caller's sink (which hashes and writes them); this module keeps no file.
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { ImageFetchError } from './errors';

export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
export const MAX_REDIRECTS = 5;

export interface DownloadOptions {
  /** Called once the final answer's headers are in: its length (null when not sent) and validators. */
  onStart?: (response: DownloadStart) => Promise<void> | void;
  /** Receives the body in order; a throw stops the download and is rethrown. */
  onChunk: (chunk: Buffer) => Promise<void> | void;
  signal?: AbortSignal | undefined;
  /** No byte for this long (connecting, waiting for headers, or mid-body) fails with TIMEOUT. */
  idleTimeoutMs?: number | undefined;
}

export interface DownloadStart {
  total: number | null;
  etag: string | null;
  lastModified: string | null;
  /** Where the redirects led. */
  finalUrl: URL;
}

/** A URL as it may be shown and stored: without user name or password. */
export function redactUrl(url: URL): string {
  if (url.username === '' && url.password === '') return url.href;
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** Why the request was torn down by us rather than by the network. */
class Teardown extends Error {
  constructor(readonly reason: 'timeout' | 'cancelled') {
    super(reason);
  }
}

/** Downloads `url` into `onChunk`; resolves when every byte the server announced has arrived. */
export async function download(url: URL, options: DownloadOptions): Promise<DownloadStart> {
  const label = redactUrl(url);
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  let received = 0;
  // What is in flight, and (set before tearing it down) why we did: the stream then fails with a generic
  // "aborted", which must not hide the reason.
  const live: { req: ClientRequest | null; res: IncomingMessage | null; teardown: Teardown | null } = { req: null, res: null, teardown: null };
  const tearDown = (reason: Teardown['reason']): void => {
    live.teardown ??= new Teardown(reason);
    live.req?.destroy(live.teardown);
    live.res?.destroy(live.teardown);
  };
  let timer: NodeJS.Timeout | null = null;
  const arm = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => tearDown('timeout'), idleMs);
  };
  const disarm = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  const onAbort = (): void => tearDown('cancelled');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (options.signal?.aborted) throw new Teardown('cancelled');
    let target = url;
    for (let redirects = 0; ; redirects++) {
      arm();
      const { req, res } = await get(target, (r) => (live.req = r));
      live.res = res;
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status)) {
        res.resume();
        req.destroy();
        target = nextHop(target, res.headers.location, redirects, label);
        continue;
      }
      if (status < 200 || status > 299) {
        res.resume();
        req.destroy();
        throw statusError(status, res.statusMessage ?? '', label);
      }
      const length = Number(res.headers['content-length']);
      const start: DownloadStart = {
        total: Number.isSafeInteger(length) && length >= 0 ? length : null,
        etag: headerValue(res.headers.etag),
        lastModified: headerValue(res.headers['last-modified']),
        finalUrl: target,
      };
      disarm();
      await options.onStart?.(start);
      arm();
      for await (const chunk of res as AsyncIterable<Buffer>) {
        // The idle clock measures the network, not our own writes.
        disarm();
        received += chunk.length;
        await options.onChunk(chunk);
        arm();
      }
      if (!res.complete || (start.total !== null && received !== start.total)) {
        throw interrupted(label, received, start.total);
      }
      return start;
    }
  } catch (e) {
    throw networkError(live.teardown ?? e, label, received, idleMs);
  } finally {
    disarm();
    options.signal?.removeEventListener('abort', onAbort);
    live.res?.destroy();
    live.req?.destroy();
  }
}

function get(url: URL, expose: (req: ClientRequest) => void): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    // No agent: each hop on its own connection, nothing kept alive once the download is over.
    const req = client.get(url, { agent: false, headers: { 'user-agent': 'vmsnap', accept: '*/*' } }, (res) => resolve({ req, res }));
    req.on('error', reject);
    expose(req);
  });
}

function headerValue(v: string | string[] | undefined): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function nextHop(from: URL, location: string | undefined, redirects: number, label: string): URL {
  if (location === undefined || location === '') {
    throw new ImageFetchError('HTTP_STATUS', `${label} answered with a redirect that says nowhere to go: check the URL.`, { source: label });
  }
  if (redirects >= MAX_REDIRECTS) {
    throw new ImageFetchError('BAD_REDIRECT', `${label} redirected more than ${MAX_REDIRECTS} times: give the final address of the image.`, { source: label });
  }
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new ImageFetchError('BAD_REDIRECT', `${label} redirected to an invalid address ("${location}"): give the final address of the image.`, { source: label });
  }
  if (from.protocol === 'https:' && next.protocol === 'http:') {
    throw new ImageFetchError('BAD_REDIRECT', `${label} redirected from https to plain http (${redactUrl(next)}), which is refused: use an https address that stays on https, or the http address itself if you trust it.`, { source: label });
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new ImageFetchError('BAD_REDIRECT', `${label} redirected to a ${next.protocol} address, which cannot be downloaded: give an http(s) address of the image.`, { source: label });
  }
  return next;
}

function statusError(status: number, text: string, label: string): ImageFetchError {
  const said = `${status}${text !== '' ? ` ${text}` : ''}`;
  if (status === 404 || status === 410) {
    return new ImageFetchError('NOT_FOUND', `${label} does not exist on the server (${said}): check the URL.`, { source: label, status });
  }
  const hint =
    status === 401 || status === 403
      ? 'the server refuses access: use a public download address'
      : status >= 500
        ? 'the server failed: try again later'
        : 'check the URL';
  return new ImageFetchError('HTTP_STATUS', `${label} answered ${said}: ${hint}.`, { source: label, status });
}

function interrupted(label: string, received: number, total: number | null): ImageFetchError {
  const of = total !== null ? ` of ${total}` : '';
  return new ImageFetchError('INTERRUPTED', `The download of ${label} broke off after ${received}${of} bytes: try again.`, { source: label });
}

function networkError(e: unknown, label: string, received: number, idleMs: number): ImageFetchError {
  if (e instanceof ImageFetchError) return e;
  if (e instanceof Teardown) {
    return e.reason === 'cancelled'
      ? new ImageFetchError('CANCELLED', `Fetching ${label} was cancelled.`, { source: label })
      : new ImageFetchError('TIMEOUT', `${label} sent nothing for ${idleMs < 1000 ? `${idleMs} ms` : `${Math.round(idleMs / 1000)} s`}${received > 0 ? ` after ${received} bytes` : ''}: the server stalled; try again later.`, { source: label });
  }
  const err = e as NodeJS.ErrnoException;
  const host = safeHost(label);
  const details = { source: label, cause: e };
  switch (err?.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return new ImageFetchError('UNREACHABLE', `The host ${host} cannot be found (DNS lookup failed): check the URL and your network connection.`, details);
    case 'ECONNREFUSED':
      return new ImageFetchError('UNREACHABLE', `${host} refused the connection (nothing listens there): check the URL, including its port.`, details);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'EADDRNOTAVAIL':
      return new ImageFetchError('UNREACHABLE', `${host} cannot be reached (${err.code}): check your network connection and try again.`, details);
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return interrupted(label, received, null);
  }
  if (typeof err?.code === 'string' && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(err.code)) {
    return new ImageFetchError('UNREACHABLE', `${host}'s TLS certificate is not trusted (${err.code}): check the URL, or the system's certificate store.`, details);
  }
  if (err?.message === 'aborted') return interrupted(label, received, null);
  return new ImageFetchError('UNREACHABLE', `Downloading ${label} failed: ${err?.message ?? String(e)}.`, details);
}

function safeHost(label: string): string {
  try {
    return new URL(label).host;
  } catch {
    return label;
  }
}
