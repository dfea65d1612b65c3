// `vmsnap checkpoint`: one checkpoint now, for scripts and git hooks; with --auto, an automatic one under the
// machine's policy (skipped when not due or unchanged), which never fails the hook that asked for it.
import { isMachineError, type AutoCheckpointOutcome } from '../engine/machine';
import type { Command } from './args';
import { emit, type CliContext } from './output';
import { openLibrary, shortId, VM_ARG } from './vm/shared';

/** "Checkpoint 2026-12-06 14:03", local time: a name from the time, as the extension's checkpoint key makes one. */
function checkpointName(t: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `Checkpoint ${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}`;
}

export const checkpointCommand: Command<CliContext> = {
  name: 'checkpoint',
  summary: 'snapshot a machine now, named from the time; --auto: an automatic checkpoint (for git hooks)',
  description: [
    'Without --auto: a snapshot of your own, named "Checkpoint YYYY-MM-DD HH:MM" (a running machine\'s memory too).',
    'With --auto: an automatic checkpoint under the machine\'s policy (vm edit --auto-every): taken unless the last',
    'automatic one is younger than a minute (or the interval, if shorter) or the machine did not change; then the',
    'retention prunes. Made for git hooks: it never fails (exit 0; skips and problems are one line on stderr), so',
    'a pre-rebase hook never blocks the rebase. --reason says why, in the checkpoint\'s description.',
    '',
    'A git hook (.git/hooks/post-checkout, executable):',
    '  #!/bin/sh',
    '  vmsnap checkpoint dev --auto --reason "git checkout $(git branch --show-current)"',
  ].join('\n'),
  args: [VM_ARG],
  flags: [
    { name: 'auto', kind: 'boolean', description: 'an automatic checkpoint, if due and the machine changed' },
    { name: 'reason', kind: 'value', valueName: 'TEXT', description: 'with --auto: why (default: "vmsnap checkpoint --auto")' },
  ],
  examples: ['vmsnap checkpoint dev', 'vmsnap checkpoint dev --auto --reason "git post-checkout"'],
  async run(inv, ctx) {
    const vm = inv.required('VM');
    if (!inv.flag('auto')) {
      const lib = await openLibrary(inv, ctx);
      const s = await lib.takeSnapshot(vm, checkpointName(new Date()));
      emit(ctx, s, () => `Took checkpoint "${s.name}" (id ${shortId(s.id)}) of "${vm}"${s.hasMemory ? ` with its memory (paused ${s.pauseMs} ms)` : ''}.`);
      return 0;
    }
    const reason = (inv.value('reason') ?? 'vmsnap checkpoint --auto').replace(/[\r\n]+/g, ' ').slice(0, 200);
    let outcome: AutoCheckpointOutcome | { result: 'failed'; message: string };
    try {
      const lib = await openLibrary(inv, ctx);
      outcome = await lib.autoCheckpoint(vm, { trigger: { kind: 'event', reason } });
    } catch (err) {
      if (!isMachineError(err)) throw err;
      outcome = { result: 'failed', message: `No automatic checkpoint of "${vm}": ${err.message}` };
    }
    if (ctx.out.json) ctx.out.document(outcome);
    else if (outcome.result === 'taken') ctx.out.print(outcome.message);
    else ctx.out.error(outcome.message);
    if ('pruned' in outcome && !ctx.out.json) for (const p of outcome.pruned) ctx.out.print(`Pruned automatic checkpoint "${p.name}".`);
    return 0;
  },
};
