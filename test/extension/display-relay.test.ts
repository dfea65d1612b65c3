// The display tab's relay (vscode-free): the RFB stream of QEMU's real VNC socket carried both ways, and flow
// control that keeps the extension host's buffer bounded against a server that floods and a webview that stalls.
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { RELAY_LIMITS, RfbRelay } from '../../src/extension/display/relay';
import { runtimeFiles } from '../../src/engine/runtime/files';
import { startMachine, stopMachine } from '../../src/engine/runtime';
import { ACCEL, Machines, requireQemu } from '../support/guest-machines';
import { scratchDir } from '../support/qemu';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function connected(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** What a webview would get: the posted bytes in order, acknowledged at once unless `stalled`. */
class FakeWebview {
  readonly received: Buffer[] = [];
  length = 0;
  stalled = false;
  relay!: RfbRelay;
  closedWith: string | null | undefined = undefined;
  post = (bytes: Uint8Array): void => {
    this.received.push(Buffer.from(bytes));
    this.length += bytes.byteLength;
    if (!this.stalled) this.relay.ack(bytes.byteLength);
  };
  onClose = (reason: string | null): void => {
    this.closedWith = reason;
  };
  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }
  async until(n: number, ms = 10000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (this.length < n) {
      if (Date.now() > deadline) throw new Error(`got ${this.length} of ${n} bytes`);
      await sleep(10);
    }
    return this.bytes;
  }
}

describe('display relay: the RFB stream between a VNC unix socket and a webview', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-relay-');
  const machines = new Machines(scratch.dir);
  const servers: Server[] = [];
  after(async () => {
    for (const s of servers) s.close();
    await machines.endAll();
    scratch.cleanup();
  });

  it('carries QEMU\'s RFB handshake both ways, up to the screen size, and reports the socket going away', async () => {
    requireQemu();
    const config = { ...machines.make('vnc'), display: 'std' as const };
    const started = await startMachine(config, { accel: ACCEL });
    machines.track(config.folder, started.pid);
    const view = new FakeWebview();
    view.relay = new RfbRelay(await connected(runtimeFiles(config.folder).displaySocket), view.post, view.onClose);
    assert.equal((await view.until(12)).toString('latin1'), 'RFB 003.008\n');
    view.relay.toServer(Buffer.from('RFB 003.008\n', 'latin1'));
    const types = await view.until(13);
    const count = types[12]!;
    const all = await view.until(13 + count);
    assert.ok([...all.subarray(13, 13 + count)].includes(1), 'QEMU offers security type None on the private socket');
    view.relay.toServer(Uint8Array.of(1)); // None
    await view.until(13 + count + 4); // SecurityResult
    assert.equal(view.bytes.readUInt32BE(13 + count), 0, 'security accepted');
    view.relay.toServer(Uint8Array.of(1)); // ClientInit: shared
    const init = await view.until(13 + count + 4 + 24);
    const at = 13 + count + 4;
    const [width, height] = [init.readUInt16BE(at), init.readUInt16BE(at + 2)];
    assert.ok(width >= 640 && height >= 400, `ServerInit gives the screen size, got ${width}x${height}`);

    await stopMachine(config.folder, { force: true });
    const deadline = Date.now() + 5000;
    while (view.closedWith === undefined && Date.now() < deadline) await sleep(20);
    assert.notEqual(view.closedWith, undefined, 'the relay says the connection ended');
  });

  it('holds at most its limit for a webview that stalls while the server floods, and loses nothing when it goes on', async () => {
    const path = join(scratch.dir, 'flood.sock');
    const total = 48 * 1024 * 1024;
    const sent = createHash('sha256');
    const server = createServer((s) => {
      let left = total;
      const block = Buffer.alloc(64 * 1024);
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(block.length, left);
          for (let i = 0; i < n; i += 4096) block[i] = (left + i) & 0xff;
          const piece = Buffer.from(block.subarray(0, n));
          sent.update(piece);
          left -= n;
          if (!s.write(piece)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));

    const view = new FakeWebview();
    view.stalled = true;
    view.relay = new RfbRelay(await connected(path), view.post, view.onClose);
    await sleep(1500);
    const held = view.relay.buffered;
    assert.ok(view.relay.isPaused, 'reading stopped');
    assert.ok(held <= RELAY_LIMITS.maxBuffered + 64 * 1024, `held ${held} bytes for a stalled webview (limit ${RELAY_LIMITS.maxBuffered})`);
    assert.ok(view.length < total / 4, 'the flood waits in the socket, not in this process');

    // The webview catches up: everything arrives, in order, and the peak stayed within the limit.
    view.stalled = false;
    view.relay.ack(view.length);
    const got = await view.until(total, 30000);
    assert.equal(createHash('sha256').update(got).digest('hex'), sent.digest('hex'));
    assert.ok(view.relay.peakBuffered <= RELAY_LIMITS.maxBuffered + 64 * 1024, `peak ${view.relay.peakBuffered}`);
    assert.ok(Math.max(...view.received.map((b) => b.length)) <= RELAY_LIMITS.maxMessage, 'no message over the message size');
  });

  it('cuts off a client whose input the server does not read, instead of queueing it', async () => {
    const path = join(scratch.dir, 'deaf.sock');
    const server = createServer((s) => s.pause()); // never reads
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    const view = new FakeWebview();
    view.relay = new RfbRelay(await connected(path), view.post, view.onClose);
    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    while (view.closedWith === undefined && sent < 64 * 1024 * 1024) {
      view.relay.toServer(chunk);
      sent += chunk.length;
      await sleep(0);
    }
    assert.match(String(view.closedWith), /did not take the input/);
    assert.ok(sent < 16 * 1024 * 1024, `cut off after ${sent} bytes`);
  });
});
