// waitForSsh against servers that behave like the stages of a booting guest behind QEMU's user-mode forward.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { freeLocalPort, isSshError, waitForSsh } from '../../../src/engine/ssh';

/** A TCP server on 127.0.0.1 that does `onConnection` with every client; `close` also drops open connections. */
async function listen(onConnection: (socket: Socket, index: number) => void): Promise<{ port: number; close: () => Promise<void> }> {
  let index = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket, index++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const close = (): Promise<void> => {
    sockets.forEach((s) => s.destroy());
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return { port: address.port, close };
}

const timedOut = (failure: RegExp) => (e: unknown): boolean => isSshError(e) && e.code === 'TIMEOUT' && failure.test(e.lastFailure ?? '') && e.message.includes(e.lastFailure ?? '');

describe('waiting for a machine to accept SSH', function () {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });
  async function server(onConnection: (socket: Socket, index: number) => void): Promise<number> {
    const { port, close } = await listen(onConnection);
    closers.push(close);
    return port;
  }

  it('times out on a port that accepts but never sends a banner (a forward whose guest hangs)', async function () {
    const port = await server(() => {});
    const started = Date.now();
    await assert.rejects(waitForSsh('127.0.0.1', port, { timeoutMs: 1200, attemptTimeoutMs: 500 }), timedOut(/nothing was sent/));
    const took = Date.now() - started;
    assert.ok(took >= 1150 && took < 3000, `took ${took} ms`);
  });

  it('times out on a port that accepts and closes at once (QEMU\'s forward before the guest listens)', async function () {
    const port = await server((socket) => socket.destroy());
    let attempts = 0;
    await assert.rejects(
      waitForSsh('127.0.0.1', port, { timeoutMs: 1000, retryDelayMs: 50, onAttempt: (a) => (attempts = a.attempt) }),
      timedOut(/closed before a banner|reset/),
    );
    assert.ok(attempts > 3, `${attempts} attempts`);
  });

  it('times out on a closed port, saying the connection was refused', async function () {
    const port = await freeLocalPort();
    await assert.rejects(waitForSsh('127.0.0.1', port, { timeoutMs: 800 }), timedOut(/connection refused/));
  });

  it('keeps trying through closed connections and answers once the banner comes', async function () {
    const port = await server((socket, index) => {
      if (index < 3) return socket.destroy();
      // Other lines may precede the identification line (RFC 4253 §4.2), and it may arrive in pieces.
      socket.write('Welcome\r\nSSH-2.0-Open');
      setTimeout(() => socket.write('SSH_9.9 test\r\n'), 50);
    });
    const seen: (string | null)[] = [];
    const answer = await waitForSsh('127.0.0.1', port, { timeoutMs: 10_000, retryDelayMs: 20, onAttempt: (a) => seen.push(a.lastFailure) });
    assert.equal(answer.banner, 'SSH-2.0-OpenSSH_9.9 test');
    assert.equal(answer.attempts, 4);
    assert.equal(seen[0], null);
    assert.match(seen[1] ?? '', /closed before a banner|reset/);
  });

  it('something that is not SSH on the port is not taken for it', async function () {
    const port = await server((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    // Waits for the outcome, not for a clock: three attempts that each read the answer and refused it, then cancels.
    const controller = new AbortController();
    const failures: string[] = [];
    const onAttempt = ({ lastFailure }: { lastFailure: string | null }): void => {
      if (lastFailure !== null) failures.push(lastFailure);
      if (failures.length === 3) controller.abort();
    };
    await assert.rejects(
      waitForSsh('127.0.0.1', port, { timeoutMs: 60_000, retryDelayMs: 20, signal: controller.signal, onAttempt }),
      (e: unknown) => isSshError(e) && e.code === 'ABORTED',
    );
    assert.deepEqual(failures, Array(3).fill('closed without an SSH identification line'));
  });

  it('a time-out names what the last whole attempt saw, not the silence of one the deadline cut short', async function () {
    // The first connection answers HTTP; later ones stay silent, so the attempt the deadline ends hears nothing.
    const port = await server((socket, index) => {
      if (index === 0) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    let attempts = 0;
    await assert.rejects(
      waitForSsh('127.0.0.1', port, { timeoutMs: 3000, onAttempt: (a) => (attempts = a.attempt) }),
      timedOut(/^closed without an SSH identification line$/),
    );
    assert.ok(attempts >= 2, `${attempts} attempts: the silent one after the HTTP answer was made`);
  });

  it('stops at once when cancelled, with ABORTED', async function () {
    const port = await server(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    await assert.rejects(waitForSsh('127.0.0.1', port, { timeoutMs: 30_000, signal: controller.signal }), (e: unknown) => isSshError(e) && e.code === 'ABORTED');
    assert.ok(Date.now() - started < 1500);
    await assert.rejects(waitForSsh('127.0.0.1', port, { timeoutMs: 30_000, signal: controller.signal }), (e: unknown) => isSshError(e) && e.code === 'ABORTED');
  });

  describe('freeLocalPort', function () {
    it('gives a port that can be bound on 127.0.0.1', async function () {
      const port = await freeLocalPort();
      const srv = createServer();
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(port, '127.0.0.1', resolve);
      });
      closers.push(() => new Promise((resolve) => srv.close(() => resolve())));
    });

    it('gives the preferred port when it is free, another when it is taken', async function () {
      const preferred = await freeLocalPort();
      assert.equal(await freeLocalPort(preferred), preferred);
      const taken = await server(() => {});
      const other = await freeLocalPort(taken);
      assert.notEqual(other, taken);
      assert.ok(other > 0 && other < 65536);
    });

    it('refuses a number that is not a port', async function () {
      for (const bad of [0, -1, 65536, 22.5]) {
        await assert.rejects(freeLocalPort(bad), (e: unknown) => isSshError(e) && e.code === 'INVALID_ARGUMENT');
      }
    });
  });
});
