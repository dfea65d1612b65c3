// `vmsnap auto run`: the automatic checkpoint schedule in the foreground, for a terminal or a systemd user service.
import { AutoScheduler, isMachineError, type AutoCheckpointOutcome } from '../engine/machine';
import type { CommandGroup } from './args';
import type { CliContext } from './output';
import { formatDate, openLibrary } from './vm/shared';

/** One line per outcome, with the time: a service's journal reads well. */
function outcomeLine(o: AutoCheckpointOutcome): string {
  const pruned = o.pruned.length > 0 ? ` Pruned ${o.pruned.map((p) => `"${p.name}"`).join(', ')}.` : '';
  return `${formatDate(new Date().toISOString())} ${o.message}${pruned}`;
}

export const autoVerb: CommandGroup<CliContext> = {
  name: 'auto',
  summary: 'run the automatic checkpoint schedule (machines with vm edit --auto-every)',
  commands: [
    {
      name: 'run',
      summary: 'take automatic checkpoints on schedule until Ctrl-C (or one round with --once)',
      description: [
        'Checks every machine with a policy, takes the checkpoints that are due (skipping unchanged machines and',
        'full disks, with a warning), prunes, and sleeps until the next one is due. Safe next to VS Code\'s own',
        'schedule and other `auto run`s: the machine lock and a second due check make one checkpoint of two.',
        'Under --json: one JSON document per line for each outcome (not one document).',
      ].join('\n'),
      args: [],
      flags: [{ name: 'once', kind: 'boolean', description: 'one round, then exit' }],
      examples: ['vmsnap auto run', 'vmsnap auto run --once'],
      async run(inv, ctx) {
        const lib = await openLibrary(inv, ctx);
        const report = (o: AutoCheckpointOutcome): void => {
          if (ctx.out.json) ctx.out.io.stdout.write(`${JSON.stringify(o)}\n`);
          else if (o.result === 'taken' || o.result === 'unchanged') ctx.out.print(outcomeLine(o));
          else ctx.out.error(outcomeLine(o));
        };
        const scheduler = new AutoScheduler(lib, {
          onOutcome: report,
          onError: (m, err) => {
            if (!isMachineError(err)) throw err;
            ctx.out.error(m === null ? `The library cannot be listed: ${err.message}` : `Automatic checkpoint of "${m.name}": ${err.message}`);
          },
        });
        if (inv.flag('once')) {
          await scheduler.tick();
          return 0;
        }
        const machines = (await lib.list()).filter((m) => m.autoCheckpoints !== null);
        if (!ctx.out.json) ctx.out.print(`Automatic checkpoints for ${machines.length === 0 ? 'no machine yet (vm edit NAME --auto-every 30m)' : machines.map((m) => `"${m.name}"`).join(', ')}; Ctrl-C stops.`);
        await scheduler.run(ctx.signal);
        return 0;
      },
    },
  ],
};
