// The guest agent client and the machines that have no agent. The protocol side talks to a peer on a real unix
// socket that behaves as agents do when they go wrong (stale replies before the resync, silence, errors); the
// machine side runs the counting boot sector (no agent, TCG): it still snapshots, marked not quiesced, quickly.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Library } from '../../../src/engine/machine';
import { frozenAround } from '../../../src/engine/runtime/guest-actions';
import { GuestAgent, hostTimeNs, isGuestAgentError } from '../../../src/engine/runtime/guest-agent';
import { qemuArgs, runtimeFiles, runtimeInfo, startMachine, stopMachine } from '../../../src/engine/runtime';
import { ACCEL, libraryWithCountingGuest } from '../../support/guest-machines';
import { scratchDir } from '../../support/qemu';

/** A peer on a unix socket: `onLine` gets each request line (after the client's 0xFF) and the socket to answer on. */
async function peer(path: string, onLine: (line: string, socket: Socket) => void, onConnect?: (socket: Socket) => void): Promise<Server> {
  const server = createServer((socket) => {
    onConnect?.(socket);
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1').replace(/\xff/g, '');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        onLine(line, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

/** Answers a guest-sync-delimited the way qemu-ga does: 0xFF, then the id back. */
function syncReply(line: string, socket: Socket): boolean {
  const m = JSON.parse(line) as { execute: string; arguments?: { id?: number } };
  if (m.execute !== 'guest-sync-delimited') return false;
  socket.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`{"return": ${m.arguments?.id}}\n`)]));
  return true;
}

async function rejectsAgent(p: Promise<unknown>, code: string, withinMs: number): Promise<number> {
  const t0 = performance.now();
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isGuestAgentError(e), String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
  const ms = performance.now() - t0;
  assert.ok(ms < withinMs, `gave up after ${ms} ms`);
  return ms;
}

describe('runtime: the guest agent client', function () {
  const scratch = scratchDir('vmsnap-qga-');
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
    scratch.cleanup();
  });

  it('resyncs past stale replies and garbage, then runs commands; ns times go out as exact integers', async () => {
    const path = scratch.path('stale.sock');
    const seen: string[] = [];
    servers.push(
      await peer(
        path,
        (line, socket) => {
          seen.push(line);
          if (syncReply(line, socket)) return;
          const m = JSON.parse(line) as { execute: string };
          if (m.execute === 'guest-get-host-name') socket.write('{"return": {"host-name": "dev"}}\n');
          else if (m.execute === 'guest-set-time') socket.write('{"return": {}}\n');
          else socket.write(`{"error": {"class": "CommandNotFound", "desc": "The command ${m.execute} has not been found"}}\n`);
        },
        // What an earlier client left unread: a reply, half a line, bytes that are not text.
        (socket) =>
          socket.write(Buffer.concat([Buffer.from('{"return": {"host-name": "stale"}}\n'), Buffer.from([0xff]), Buffer.from('{"return": 99}\n{"return": 7'), Buffer.from([0x00, 0xfe, 0x0a])])),
      ),
    );
    const agent = await GuestAgent.connect(path, { syncTimeoutMs: 2000 });
    try {
      assert.deepEqual(await agent.execute('guest-get-host-name'), { 'host-name': 'dev' });
      const time = hostTimeNs();
      await agent.execute('guest-set-time', { time });
      assert.ok(seen.some((l) => l === `{"execute":"guest-set-time","arguments":{"time":${time}}}`), seen.join('\n'));
      await rejectsAgent(agent.execute('guest-nonsense'), 'AGENT_ERROR', 1000);
    } finally {
      agent.close();
    }
  });

  it('gives up quickly on a silent agent: at the resync, and on a command that never comes back', async () => {
    const silent = scratch.path('silent.sock');
    servers.push(await peer(silent, () => {}));
    const ms = await rejectsAgent(GuestAgent.connect(silent, { syncTimeoutMs: 300 }), 'TIMEOUT', 1000);
    assert.ok(ms >= 290, `waited ${ms} ms`);

    const hangs = scratch.path('hangs.sock');
    servers.push(await peer(hangs, (line, socket) => void syncReply(line, socket)));
    const agent = await GuestAgent.connect(hangs, { syncTimeoutMs: 1000 });
    await rejectsAgent(agent.execute('guest-fsfreeze-freeze', undefined, 300), 'TIMEOUT', 1000);
    // The late reply must not answer the next command: the connection is closed after a time-out.
    await rejectsAgent(agent.execute('guest-ping'), 'UNAVAILABLE', 100);
  });

  /** A peer that freezes and thaws as an agent does (freeze answered after `freezeDelayMs`); it logs what it did. */
  async function freezingPeer(name: string, freezeDelayMs: number): Promise<{ path: string; log: string[]; state: () => string }> {
    const path = scratch.path(name);
    const log: string[] = [];
    let state = 'thawed';
    servers.push(
      await peer(path, (line, socket) => {
        if (syncReply(line, socket)) return;
        const m = JSON.parse(line) as { execute: string };
        log.push(m.execute);
        if (m.execute === 'guest-fsfreeze-status') socket.write(`{"return": "${state}"}\n`);
        else if (m.execute === 'guest-fsfreeze-freeze') {
          state = 'frozen';
          setTimeout(() => socket.writable && socket.write('{"return": 2}\n'), freezeDelayMs);
        } else if (m.execute === 'guest-fsfreeze-thaw') {
          state = 'thawed';
          socket.write('{"return": 2}\n');
        }
      }),
    );
    return { path, log, state: () => state };
  }

  it('freezes around the switch and always thaws: after it, after it failed, and after a freeze that timed out', async () => {
    const good = await freezingPeer('freeze.sock', 0);
    const connect = (path: string) => (o: { syncTimeoutMs?: number }) => GuestAgent.connect(path, o);
    const r = await frozenAround(connect(good.path), true, async () => good.state());
    assert.equal(r.value, 'frozen', 'the switch ran while frozen');
    assert.deepEqual({ quiesced: r.quiesce.quiesced, note: r.quiesce.note }, { quiesced: true, note: null });
    assert.equal(good.state(), 'thawed');

    await assert.rejects(frozenAround(connect(good.path), true, () => Promise.reject(new Error('transaction refused'))), /transaction refused/);
    assert.equal(good.state(), 'thawed', 'thawed after the switch failed');
    assert.deepEqual(good.log.slice(-3), ['guest-fsfreeze-status', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);

    // The freeze answers too late: the switch goes on unquiesced, and the thaw comes on a new connection.
    const slow = await freezingPeer('slow.sock', 800);
    const t0 = performance.now();
    const late = await frozenAround(connect(slow.path), true, async () => 'switched', { freezeTimeoutMs: 300 });
    assert.equal(late.value, 'switched');
    assert.equal(late.quiesce.quiesced, false);
    assert.match(String(late.quiesce.note), /^Not quiesced\. The guest agent did not answer guest-fsfreeze-freeze within 300 ms\.$/);
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(slow.state(), 'thawed');

    // A paused machine's agent cannot answer: not even asked.
    const paused = await frozenAround(connect(scratch.path('never.sock')), false, async () => 'switched');
    assert.match(String(paused.quiesce.note), /^Not quiesced\. The machine is paused/);
  });

  it('says the channel is unreachable when nothing listens on the socket', async () => {
    await rejectsAgent(GuestAgent.connect(scratch.path('none.sock'), { syncTimeoutMs: 1000 }), 'UNAVAILABLE', 1000);
  });
});

describe('machines without a guest agent (counting boot sector, TCG)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-noagent-');
  let lib: Library;
  let folder = '';

  before(async () => {
    const guest = await libraryWithCountingGuest(join(scratch.dir, 'lib'), scratch.path('guest.raw'));
    lib = guest.lib;
    folder = guest.machine.folder;
  });

  after(async () => {
    await stopMachine(folder, { force: true }).catch(() => {});
    scratch.cleanup();
  });

  it('has the agent channel, snapshots without delay marked not quiesced, and says the agent does not answer', async () => {
    await lib.startMachine('guest');
    const info = await runtimeInfo(folder);
    assert.equal(info?.agentSocket, runtimeFiles(folder).agentSocket);
    assert.ok(info?.argv.includes('virtserialport,bus=vserial0.0,chardev=agent0,name=org.qemu.guest_agent.0'));

    const t0 = performance.now();
    const guest = await lib.guestInfo('guest');
    const guestMs = performance.now() - t0;
    assert.equal(guest?.agent, 'not-answering');
    assert.match(String(guest?.reason), /No guest agent listens/);
    assert.ok(guestMs < 1000, `status asked the agent for ${guestMs} ms`);

    const taken = await lib.takeSnapshot('guest', 'disks', { diskOnly: true });
    assert.equal(taken.quiesced, false);
    assert.equal(taken.quiesce?.quiesced, false);
    assert.match(String(taken.quiesce?.note), /^Not quiesced\. No guest agent listens/);
    // The added time: asking QEMU whether anything opened the channel.
    assert.ok(taken.quiesce!.lostMs < 200, `the agent check took ${taken.quiesce!.lostMs} ms`);
    console.log(`      no agent: the check added ${taken.quiesce!.lostMs.toFixed(1)} ms to the disk-only snapshot; status ${guestMs.toFixed(0)} ms`);
    const record = (JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as { snapshots: { name: string; quiesced?: boolean }[] }).snapshots.find((s) => s.name === 'disks');
    assert.equal(record?.quiesced, false);
    assert.equal((await lib.snapshotTree('guest')).roots[0]?.quiesced, false);

    const withMemory = await lib.takeSnapshot('guest', 'memory');
    assert.equal(withMemory.quiesce, null, 'a snapshot with memory needs no freeze');
    const r = await lib.revert('guest', 'memory', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    assert.equal(r.guestClock?.set, false);
    assert.match(String(r.guestClock?.note), /No guest agent listens/);
  });

  it('loads a state saved before machines had the channel without it (the snapshot record says so)', async () => {
    await stopMachine(folder, { force: true });
    // A QEMU as older versions started it: no agent channel.
    const m = (JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as { name: string; disks: { top: string }[]; macAddress: string; id: string });
    await startMachine({ folder, name: m.name, cpus: 1, memoryMiB: 64, disks: m.disks.map((d) => join(folder, d.top)), macAddress: m.macAddress, uuid: m.id, guestAgent: false }, { accel: ACCEL });
    assert.equal((await runtimeInfo(folder))?.agentSocket, undefined);
    await lib.takeSnapshot('guest', 'old-state');
    // Written by a version that did not know the field: absent, as in manifests from before.
    const file = join(folder, 'machine.json');
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as { snapshots: { name: string; vm: { guestAgent?: boolean } | null }[] };
    const old = manifest.snapshots.find((s) => s.name === 'old-state')!;
    assert.equal(old.vm?.guestAgent, false);
    delete old.vm!.guestAgent;
    writeFileSync(file, JSON.stringify(manifest, null, 2));
    const r = await lib.revert('guest', 'old-state', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    assert.equal((await runtimeInfo(folder))?.agentSocket, undefined, 'loaded without the channel it did not have');
    assert.equal(r.guestClock?.set, false);
    assert.match(String(r.guestClock?.note), /without the guest agent channel/);
    assert.equal((await lib.guestInfo('guest'))?.agent, 'no-channel');
    // The next cold start has the channel again.
    await lib.stopMachine('guest', { force: true });
    await lib.startMachine('guest');
    assert.ok((await runtimeInfo(folder))?.agentSocket !== undefined);
    assert.ok(!qemuArgs({ folder, name: 'x', cpus: 1, memoryMiB: 64, disks: ['/d.qcow2'], macAddress: '52:54:00:12:34:56', guestAgent: false }, runtimeFiles(folder)).some((a) => a.includes('guest_agent')));
  });
});
