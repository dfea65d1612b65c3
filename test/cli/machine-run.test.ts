// runCli in-process for the machine layer's outcomes: MachineError codes, candidates, choices with a reason.
import { strict as assert } from 'node:assert';
import { parseArgs, Registry, UsageError } from '../../src/cli/args';
import type { CliContext } from '../../src/cli/output';
import { registry as vmsnapRegistry } from '../../src/cli/run';
import { MachineError } from '../../src/engine/machine';
import { failing, runCaptured, type Captured } from './in-process';

const registry = new Registry<CliContext>([
  {
    name: 'm',
    summary: 'machine outcomes',
    commands: [
      failing('ambiguous', new MachineError('AMBIGUOUS', '2 snapshots of "dev" are named "Base": name one by its id (1a2b3c4d, 5e6f7a8b).', ['Base (id 1a2b)', 'Base > X > Base (id 5e6f)'])),
      failing('locked', new MachineError('LOCKED_BY_CLONES', 'Snapshot "Base" is locked: the linked clone "t" depends on it; delete or promote it first.', ['t (id 99)'])),
      failing('aborted', new MachineError('ABORTED', 'Making the full clone was cancelled; nothing was changed.')),
    ],
  },
]);

const run = (argv: string[]): Promise<Captured> => runCaptured(argv, { registry });

describe('cli outcomes of the machine layer', () => {
  it('prints a MachineError as one sentence, exit 1, with the candidates of an ambiguous name on the same line', async () => {
    const r = await run(['m', 'ambiguous']);
    assert.deepEqual(r, {
      status: 1,
      stdout: '',
      stderr: '2 snapshots of "dev" are named "Base": name one by its id (1a2b3c4d, 5e6f7a8b). Candidates: Base (id 1a2b); Base > X > Base (id 5e6f).\n',
    });
    const locked = await run(['m', 'locked']);
    assert.equal(locked.status, 1);
    assert.equal(locked.stderr, 'Snapshot "Base" is locked: the linked clone "t" depends on it; delete or promote it first.\n');
  });

  it('answers --json with an error document carrying the code and candidates', async () => {
    const r = await run(['m', 'ambiguous', '--json']);
    assert.equal(r.status, 1);
    const doc = JSON.parse(r.stdout) as { error: { code: string; candidates: string[] } };
    assert.equal(doc.error.code, 'AMBIGUOUS');
    assert.deepEqual(doc.error.candidates, ['Base (id 1a2b)', 'Base > X > Base (id 5e6f)']);
  });

  it('exits 130 when the operation was cancelled', async () => {
    const r = await run(['m', 'aborted']);
    assert.equal(r.status, 130);
    assert.match(r.stderr, /cancelled/);
  });

  it('says why a required choice matters before naming its flags', () => {
    const usage = (argv: string[]): UsageError => {
      try {
        parseArgs(argv, vmsnapRegistry);
      } catch (e) {
        if (e instanceof UsageError) return e;
        throw e;
      }
      throw new Error(`${argv.join(' ')} parsed`);
    };
    assert.equal(usage(['snapshot', 'revert', 'dev', 'Base']).message, 'Reverting throws away the current state: give one of --discard-current or --save-current NAME.');
    assert.equal(usage(['snapshot', 'revert', 'dev', 'Base', '--discard-current', '--save-current', 'x']).message, 'Give only one of --discard-current or --save-current NAME.');
    assert.equal(usage(['clone', 'dev', 'copy']).message, 'Say which kind of clone to make: give one of --linked or --full.');
    assert.deepEqual(usage(['clone', 'dev', 'copy']).helpPath, ['clone']);
  });
});
