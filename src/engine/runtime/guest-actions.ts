// What the machine layer asks of a running guest through its agent: who the guest is (hostname, OS, addresses),
// its file systems frozen around a disk switch (a quiesced snapshot), its clock set to the host's, and a shutdown
// when it ignores the ACPI power button. Each one gives up quickly when no agent answers and says why.
import { withMachine } from './control';
import { connectGuestAgent, hostTimeNs, isGuestAgentError, withGuestAgent, type GuestAgent, type GuestAgentOptions } from './guest-agent';
import type { QmpClient } from './qmp';
import { runtimeInfo, type QemuOptions } from './qemu';

export interface GuestAgentQemuOptions extends QemuOptions {
  agent?: GuestAgentOptions;
}

export interface GuestAddress {
  /** The guest's name for the interface, e.g. eth0. */
  interface: string;
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
}

/** What the guest says about itself through its agent. */
export interface GuestInfo {
  /** 'answering': the fields below come from the agent; 'no-channel': the machine runs without the agent's channel. */
  agent: 'answering' | 'not-answering' | 'no-channel';
  /** Why the agent did not answer, one sentence; null when it answered. */
  reason: string | null;
  hostname: string | null;
  /** The guest OS's own name for itself, e.g. "Debian GNU/Linux 12 (bookworm)". */
  os: string | null;
  kernel: string | null;
  /** The guest's addresses, loopback left out. */
  addresses: GuestAddress[];
}

interface OsInfo {
  'pretty-name'?: string;
  name?: string;
  'version-id'?: string;
  'kernel-release'?: string;
}

interface NetworkInterface {
  name: string;
  'ip-addresses'?: { 'ip-address-type': 'ipv4' | 'ipv6'; 'ip-address': string; prefix: number }[];
}

/** Runs `fn` with the running machine's QMP (null when the machine is off). */
async function withRunning<T>(folder: string, options: QemuOptions, fn: (qmp: QmpClient, agentSocket: string | undefined, running: boolean) => Promise<T>): Promise<T | null> {
  const info = await runtimeInfo(folder);
  if (info === null) return null;
  return withMachine(folder, options, async (qmp) => fn(qmp, info.agentSocket, (await qmp.execute<{ status: string }>('query-status')).status === 'running'));
}

/** The guest's hostname, OS and addresses from its agent; null when the machine is off. Never waits long. */
export async function guestInfo(folder: string, options: GuestAgentQemuOptions = {}): Promise<GuestInfo | null> {
  return withRunning(folder, options, async (qmp, agentSocket, running) => {
    const none = { hostname: null, os: null, kernel: null, addresses: [] };
    if (!running) return { agent: 'not-answering', reason: 'The machine is paused: its guest agent cannot answer.', ...none };
    let agent: GuestAgent;
    try {
      agent = await connectGuestAgent(qmp, agentSocket, options.agent);
    } catch (e) {
      if (!isGuestAgentError(e)) throw e;
      return { agent: e.code === 'NO_CHANNEL' ? 'no-channel' : 'not-answering', reason: e.message, ...none };
    }
    try {
      const host = await agent.execute<{ 'host-name': string }>('guest-get-host-name');
      const os = await agent.execute<OsInfo>('guest-get-osinfo').catch(() => null);
      const nics = await agent.execute<NetworkInterface[]>('guest-network-get-interfaces').catch(() => []);
      return {
        agent: 'answering',
        reason: null,
        hostname: host['host-name'],
        os: os === null ? null : (os['pretty-name'] ?? ([os.name, os['version-id']].filter((p) => p !== undefined).join(' ') || null)),
        kernel: os?.['kernel-release'] ?? null,
        addresses: nics
          .filter((n) => n.name !== 'lo')
          .flatMap((n) => (n['ip-addresses'] ?? []).map((a) => ({ interface: n.name, family: a['ip-address-type'], address: a['ip-address'], prefix: a.prefix }))),
      };
    } catch (e) {
      if (!isGuestAgentError(e)) throw e;
      return { agent: 'not-answering', reason: e.message, ...none };
    } finally {
      agent.close();
    }
  });
}

export interface QuiesceOutcome {
  /** The guest's file systems were frozen (flushed, no writes) at the disk switch. */
  quiesced: boolean;
  /** Why they were not (or what went wrong after), one sentence; null when all went well. */
  note: string | null;
  /** How long the freeze call took (the guest flushing its file systems). */
  freezeMs: number;
  /** From the freeze being in place until the thaw came back: the window the guest's writes waited. */
  frozenMs: number;
  /** Time spent asking an agent that did not freeze (0 when it froze). */
  lostMs: number;
}

export interface QuiesceOptions extends GuestAgentOptions {
  /** How long freezing may take before the switch goes on unquiesced (default 10000 ms: TCG guests flush slowly). */
  freezeTimeoutMs?: number;
}

/**
 * Runs `fn` (the disk switch) with the guest's file systems frozen by its agent; when no agent can freeze them
 * in time, runs it anyway and says why. The thaw always follows, also when `fn` fails.
 */
export async function withFrozenGuest<T>(
  qmp: QmpClient,
  agentSocket: string | undefined,
  running: boolean,
  fn: () => Promise<T>,
  options: QuiesceOptions = {},
): Promise<{ value: T; quiesce: QuiesceOutcome }> {
  return frozenAround((o) => connectGuestAgent(qmp, agentSocket, o), running, fn, options);
}

/** A connection to the guest's agent with these time-outs (a GuestAgentError when none can be had). */
export type AgentConnector = (options: GuestAgentOptions) => Promise<GuestAgent>;

/** withFrozenGuest with the connection left to `connect`: each call opens a new one. */
export async function frozenAround<T>(connect: AgentConnector, running: boolean, fn: () => Promise<T>, options: QuiesceOptions = {}): Promise<{ value: T; quiesce: QuiesceOutcome }> {
  const t0 = performance.now();
  const unquiesced = async (note: string): Promise<{ value: T; quiesce: QuiesceOutcome }> => {
    const lostMs = performance.now() - t0;
    return { value: await fn(), quiesce: { quiesced: false, note: `Not quiesced. ${note}`, freezeMs: 0, frozenMs: 0, lostMs } };
  };
  if (!running) return unquiesced('The machine is paused, so its guest agent cannot freeze its file systems.');
  let agent: GuestAgent;
  try {
    agent = await connect(options);
  } catch (e) {
    if (!isGuestAgentError(e)) throw e;
    return unquiesced(e.message);
  }
  try {
    if ((await agent.execute<string>('guest-fsfreeze-status')) === 'frozen') {
      // Someone else (a backup tool in the guest) froze them: consistent as they are, and theirs to thaw.
      agent.close();
      return { value: await fn(), quiesce: { quiesced: true, note: "The guest's file systems were already frozen (not by vmsnap); left frozen.", freezeMs: 0, frozenMs: 0, lostMs: 0 } };
    }
  } catch (e) {
    agent.close();
    if (!isGuestAgentError(e)) throw e;
    return unquiesced(e.message);
  }
  let frozeAt: number | null = null;
  let note: string | null = null;
  const tFreeze = performance.now();
  try {
    const count = await agent.execute<number>('guest-fsfreeze-freeze', undefined, options.freezeTimeoutMs ?? 10000);
    if (count > 0) frozeAt = performance.now();
    else note = 'Not quiesced. The guest agent found no file system to freeze.';
  } catch (e) {
    if (!isGuestAgentError(e)) {
      agent.close();
      throw e;
    }
    note = `Not quiesced. ${e.message}`;
  }
  const freezeMs = performance.now() - tFreeze;
  let value: T;
  try {
    value = await fn();
  } finally {
    // Always thaw (also after a freeze that timed out: it may still complete), on a fresh connection if needed.
    const thawNote = await thaw(connect, agent, options);
    agent.close();
    if (thawNote !== null) note = note === null ? thawNote : `${note} ${thawNote}`;
  }
  const now = performance.now();
  return { value, quiesce: { quiesced: frozeAt !== null, note, freezeMs, frozenMs: frozeAt === null ? 0 : now - frozeAt, lostMs: frozeAt === null ? now - t0 : 0 } };
}

/** Thaws the guest's file systems; null when done, else a sentence saying it could not. */
async function thaw(connect: AgentConnector, agent: GuestAgent, options: QuiesceOptions): Promise<string | null> {
  try {
    await agent.execute<number>('guest-fsfreeze-thaw', undefined, options.freezeTimeoutMs ?? 10000);
    return null;
  } catch (first) {
    if (!isGuestAgentError(first)) throw first;
    try {
      // A freeze that timed out may still be under way: the agent answers once it is done, so wait that long.
      const again = await connect({ ...options, syncTimeoutMs: options.freezeTimeoutMs ?? 10000 });
      try {
        await again.execute<number>('guest-fsfreeze-thaw', undefined, options.freezeTimeoutMs ?? 10000);
        return null;
      } finally {
        again.close();
      }
    } catch (e) {
      if (!isGuestAgentError(e)) throw e;
      return `The guest agent did not confirm the thaw (${e.message}): if the guest's writes hang, run "fsfreeze -u /" in it.`;
    }
  }
}

/** guest-set-time answers after `hwclock -w` in the guest, which waits for the RTC's next second (slow on TCG). */
const SET_TIME_TIMEOUT_MS = 15000;

export interface ClockOutcome {
  /** The guest's clock was set to the host's time. */
  set: boolean;
  /** Why not, one sentence; null when it was set. */
  note: string | null;
}

/** Sets the running guest's clock to the host's time (after a revert its clock is where it was at the snapshot). */
export async function setGuestClock(folder: string, options: GuestAgentQemuOptions = {}): Promise<ClockOutcome> {
  const r = await withRunning(folder, options, async (qmp, agentSocket, running): Promise<ClockOutcome> => {
    if (!running) return { set: false, note: 'The machine is paused: its guest agent cannot set the clock.' };
    try {
      // The host's time now, in ns: without an argument the agent would copy the guest's own stale RTC. The agent
      // sets the clock at once, then writes it to the RTC with hwclock, which takes seconds on TCG.
      await withGuestAgent(qmp, agentSocket, (agent) => agent.execute('guest-set-time', { time: hostTimeNs() }, SET_TIME_TIMEOUT_MS), options.agent);
      return { set: true, note: null };
    } catch (e) {
      if (!isGuestAgentError(e)) throw e;
      return { set: false, note: `The guest's clock was not set to the host's time: ${e.message}` };
    }
  });
  return r ?? { set: false, note: 'The machine is not running.' };
}

/**
 * Asks the guest agent to power the guest off (guest-shutdown, which answers nothing when it works). False when
 * no agent takes the request.
 */
export async function agentShutdown(qmp: QmpClient, agentSocket: string | undefined, options: GuestAgentOptions = {}): Promise<boolean> {
  try {
    await withGuestAgent(qmp, agentSocket, (agent) => agent.executeNoReply('guest-shutdown', { mode: 'powerdown' }, 1000), options);
    return true;
  } catch (e) {
    if (!isGuestAgentError(e)) throw e;
    return false;
  }
}
