import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { isQemuError, isQmpError } from '../../../src/engine/runtime/errors';
import { QmpClient } from '../../../src/engine/runtime/qmp';
import { runtimeFiles, startMachine } from '../../../src/engine/runtime';
import { scratchDir } from '../../support/qemu';
import { ACCEL, Machines, requireQemu } from '../../support/guest-machines';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": []}}\n';

/** A fake QMP server whose behaviour each test scripts. */
async function fakeServer(path: string, onLine: (sock: Socket, msg: { execute: string; id?: string }) => void, greet = true): Promise<Server> {
  const server = createServer((sock) => {
    if (greet) sock.write(GREETING);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onLine(sock, JSON.parse(line) as { execute: string; id?: string });
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return server;
}

function reply(sock: Socket, id: string | undefined, value: unknown): void {
  sock.write(`${JSON.stringify({ return: value, id })}\n`);
}

describe('runtime: QMP client', function () {
  const scratch = scratchDir('vmsnap-qmp-');
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    scratch.cleanup();
  });

  it('negotiates capabilities, matches replies by id, and passes events to waiters and listeners', async () => {
    const path = join(scratch.dir, 'a.sock');
    const seen: string[] = [];
    servers.push(
      await fakeServer(path, (sock, msg) => {
        seen.push(msg.execute);
        if (msg.execute === 'qmp_capabilities') return reply(sock, msg.id, {});
        if (msg.execute === 'slow') return setTimeout(() => reply(sock, msg.id, 'slow done'), 50);
        if (msg.execute === 'stop') {
          sock.write('{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}\n');
          return reply(sock, msg.id, {});
        }
        reply(sock, msg.id, { echo: msg.execute });
      }),
    );
    const qmp = await QmpClient.connect(path);
    assert.deepEqual(qmp.greeting.version, { major: 7, minor: 2, micro: 0 });
    const events: string[] = [];
    qmp.onEvent((e) => events.push(e.event));
    const stopEvent = qmp.nextEvent('STOP', 2000);
    // The slow reply arrives after the fast one: each promise still gets its own answer.
    const [slow, fast] = await Promise.all([qmp.execute<string>('slow'), qmp.execute<{ echo: string }>('fast')]);
    assert.equal(slow, 'slow done');
    assert.deepEqual(fast, { echo: 'fast' });
    await qmp.execute('stop');
    assert.equal((await stopEvent).event, 'STOP');
    assert.deepEqual(events, ['STOP']);
    assert.deepEqual(seen, ['qmp_capabilities', 'slow', 'fast', 'stop']);
    qmp.close();
    await assert.rejects(qmp.execute('after-close'), (e: unknown) => isQemuError(e) && e.code === 'QMP_UNAVAILABLE');
  });

  it('times out a server that never greets, a command never answered, and an event that never comes', async () => {
    const silent = join(scratch.dir, 'silent.sock');
    servers.push(await fakeServer(silent, () => {}, false));
    await assert.rejects(QmpClient.connect(silent, { connectTimeoutMs: 100 }), (e: unknown) => isQemuError(e) && e.code === 'TIMEOUT');

    const mute = join(scratch.dir, 'mute.sock');
    servers.push(await fakeServer(mute, (sock, msg) => (msg.execute === 'qmp_capabilities' ? reply(sock, msg.id, {}) : undefined)));
    const qmp = await QmpClient.connect(mute);
    await assert.rejects(qmp.execute('query-status', undefined, 100), (e: unknown) => isQemuError(e) && e.code === 'TIMEOUT' && /query-status/.test(e.message));
    await assert.rejects(qmp.nextEvent('RESUME', 50), (e: unknown) => isQemuError(e) && e.code === 'TIMEOUT');
    // Pending work is rejected, not left hanging, when the connection closes.
    const pending = qmp.execute('query-status');
    qmp.close();
    await assert.rejects(pending, (e: unknown) => isQemuError(e) && e.code === 'QMP_UNAVAILABLE');
  });

  it('reports a missing socket as QMP_UNAVAILABLE and a server that hangs up as closed', async () => {
    await assert.rejects(QmpClient.connect(join(scratch.dir, 'none.sock')), (e: unknown) => isQemuError(e) && e.code === 'QMP_UNAVAILABLE');
    const path = join(scratch.dir, 'hangup.sock');
    servers.push(
      await fakeServer(path, (sock, msg) => {
        if (msg.execute === 'qmp_capabilities') return reply(sock, msg.id, {});
        sock.destroy();
      }),
    );
    const qmp = await QmpClient.connect(path);
    await assert.rejects(qmp.execute('quit'), (e: unknown) => isQemuError(e) && e.code === 'QMP_UNAVAILABLE');
    assert.equal(qmp.closed, true);
  });

  describe('against QEMU', function () {
    const machines = new Machines(scratch.dir);
    before(requireQemu);
    after(() => machines.endAll());

    it('runs commands with typed replies, raises QEMU errors as QmpError, and delivers STOP/RESUME events', async () => {
      const config = machines.make('qmp');
      const started = await startMachine(config, { accel: ACCEL });
      machines.track(config.folder, started.pid);
      const qmp = await QmpClient.connect(runtimeFiles(config.folder).qmpSocket);
      try {
        assert.equal(qmp.greeting.version.major >= 7, true);
        const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
        assert.equal(status.running, true);
        await assert.rejects(
          qmp.execute('no-such-command'),
          (e: unknown) => isQmpError(e) && e.errorClass === 'CommandNotFound' && e.command === 'no-such-command',
        );
        await assert.rejects(qmp.execute('blockdev-del', { 'node-name': 'missing' }), (e: unknown) => isQmpError(e) && /missing/.test(e.description));
        // HMP reports errors inside its text: hmp() turns them into QmpError.
        await assert.rejects(qmp.hmp('qemu-io nodrive "read 0 512"'), (e: unknown) => isQmpError(e));
        assert.match(await qmp.hmp('info status'), /running/);
        const stop = qmp.nextEvent('STOP', 5000);
        await qmp.execute('stop');
        await stop;
        const resume = qmp.nextEvent('RESUME', 5000);
        await qmp.execute('cont');
        await resume;
        const shutdown = qmp.nextEvent('SHUTDOWN', 5000);
        await qmp.execute('quit');
        assert.equal((await shutdown).data['reason'], 'host-qmp-quit');
        assert.equal(await qmp.waitClosed(5000), true);
      } finally {
        qmp.close();
      }
    });
  });
});
