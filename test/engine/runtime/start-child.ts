// Run by the orphan test in its own Node process: starts a machine, prints QEMU's pid, then waits to be killed.
import { startMachine, type MachineConfig } from '../../../src/engine/runtime';

const [configJson, accel] = process.argv.slice(2);
startMachine(JSON.parse(configJson ?? '{}') as MachineConfig, accel === undefined ? {} : { accel }).then(
  (r) => {
    process.stdout.write(`${JSON.stringify({ pid: r.pid })}\n`);
    setInterval(() => {}, 60000);
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
