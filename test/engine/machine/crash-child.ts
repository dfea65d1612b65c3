// Runs one library operation in its own process, for the crash-safety test: VMSNAP_CRASH_AFTER_STEP=N kills it
// after the Nth durable step. Exit 0: the operation completed; 1: it failed (printed on stderr).
import { Library } from '../../../src/engine/machine';

export const operations: Record<string, (lib: Library) => Promise<unknown>> = {
  create: (lib) => lib.createMachine('created', { diskSize: 8 * 1024 * 1024 }),
  take: (lib) => lib.takeSnapshot('vm', 'taken', { description: 'by the crash test' }),
  'revert-discard': (lib) => lib.revert('vm', 'A', { discardCurrent: true }),
  'revert-save': (lib) => lib.revert('vm', 'B', { saveCurrentAs: 'saved' }),
  'edit-snapshot': (lib) => lib.editSnapshot('vm', 'A', { name: 'A renamed', description: 'edited' }),
  'rename-machine': (lib) => lib.renameMachine('vm3', 'vm3 renamed'),
  'delete-commit': (lib) => lib.deleteSnapshot('vm', 'B'),
  'delete-rebase': (lib) => lib.deleteSnapshot('vm', 'A'),
  'delete-leaf': (lib) => lib.deleteSnapshot('vm', 'C'),
  'delete-children': (lib) => lib.deleteSnapshot('vm', 'A', { children: true }),
  'clone-linked-current': (lib) => lib.clone('vm', 'lc', { kind: 'linked' }),
  'clone-linked-snapshot': (lib) => lib.clone('vm', 'ls', { kind: 'linked', from: 'B' }),
  'clone-full': (lib) => lib.clone('vm', 'fc', { kind: 'full', from: 'C' }),
  promote: (lib) => lib.promote('linked'),
  'delete-machine': (lib) => lib.deleteMachine('vm3'),
};

/** Deletions whose merge copies a few hundred MiB, so that a kill lands inside the copying (crash-merge.test.ts). */
export const mergeOperations: Record<string, (lib: Library) => Promise<unknown>> = {
  'delete-big-merge': (lib) => lib.deleteSnapshot('big', 'A'),
};

/** Operations on a machine QEMU runs (running.test.ts). */
export const runningOperations: Record<string, (lib: Library) => Promise<unknown>> = {
  'take-running': (lib) => lib.takeSnapshot('guest', 'live'),
  'delete-live': (lib) => lib.deleteSnapshot('k2', 'A'),
  'delete-live-newest': async (lib) => {
    const d = await lib.show('steps');
    return lib.deleteSnapshot('steps', d.snapshots[d.snapshots.length - 1]!.id);
  },
};

async function main(): Promise<void> {
  const [dir, op] = process.argv.slice(2);
  const all = { ...operations, ...mergeOperations, ...runningOperations };
  const run = all[op ?? ''];
  if (!dir || !run) throw new Error(`usage: crash-child LIBRARY (${Object.keys(all).join('|')})`);
  await run(await Library.open(dir));
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
