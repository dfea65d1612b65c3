// runCli in-process: how every kind of outcome becomes an exit status, stderr sentence and JSON document.
import { strict as assert } from 'node:assert';
import { Registry } from '../../src/cli/args';
import type { CliContext } from '../../src/cli/output';
import { registry as vmsnapRegistry } from '../../src/cli/run';
import { parseSize } from '../../src/cli/units';
import { ImageError } from '../../src/engine/qcow2/errors';
import { failing, runCaptured, type Captured } from './in-process';

const registry = new Registry<CliContext>([
  {
    name: 'test',
    summary: 'test commands',
    commands: [
      {
        name: 'ok',
        summary: 'prints a result',
        args: [],
        flags: [],
        run: async (_inv, ctx) => {
          ctx.out.print('done');
          ctx.out.document({ done: true });
          return 0;
        },
      },
      failing('image-error', new ImageError('NOT_FOUND', '/x/disk.qcow2 does not exist.', '/x/disk.qcow2')),
      failing('aborted', new ImageError('ABORTED', 'Flattening /x/a.qcow2 was cancelled.')),
      {
        name: 'bad-size',
        summary: 'parses a bad size',
        args: [],
        flags: [],
        run: async () => parseSize('12X', 'SIZE'),
      },
      failing('bug', new TypeError("Cannot read properties of undefined (reading 'size')\n  second line")),
    ],
  },
]);

const run = (argv: string[], env: Record<string, string> = {}): Promise<Captured> => runCaptured(argv, { env, registry });

describe('cli outcomes', () => {
  it('registers the real verbs as one consistent grammar', () => {
    // Building the registry checks names and flag kinds; it happened on import, so here only look at it.
    assert.deepEqual(
      vmsnapRegistry.verbs.map((v) => v.name),
      ['vm', 'snapshot', 'checkpoint', 'auto', 'clone', 'compare', 'diff', 'image'],
    );
  });

  it('prints human text, or exactly one JSON document under --json', async () => {
    assert.deepEqual(await run(['test', 'ok']), { status: 0, stdout: 'done\n', stderr: '' });
    const json = await run(['test', 'ok', '--json']);
    assert.equal(json.status, 0);
    assert.deepEqual(JSON.parse(json.stdout), { done: true });
  });

  it('reports an ImageError as its own sentence, exit 1', async () => {
    const r = await run(['test', 'image-error']);
    assert.deepEqual(r, { status: 1, stdout: '', stderr: '/x/disk.qcow2 does not exist.\n' });
    const json = await run(['test', 'image-error', '--json']);
    assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'NOT_FOUND', message: '/x/disk.qcow2 does not exist.' } });
  });

  it('reports a cancellation with exit status 130', async () => {
    const r = await run(['test', 'aborted']);
    assert.equal(r.status, 130);
    assert.equal(r.stderr, 'Flattening /x/a.qcow2 was cancelled.\n');
  });

  it('reports an unexpected error in one line without a stack trace, unless VMSNAP_DEBUG=1', async () => {
    const r = await run(['test', 'bug']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^vmsnap failed unexpectedly: Cannot read properties of undefined \(reading 'size'\) second line \(set VMSNAP_DEBUG=1 for details\)\n$/);
    const debug = await run(['test', 'bug'], { VMSNAP_DEBUG: '1' });
    assert.match(debug.stderr, /\n\s+at /, 'the stack is shown with VMSNAP_DEBUG=1');
  });

  it('reports wrong usage with exit 2 and a hint to --help', async () => {
    const r = await run(['test', 'nope']);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'Unknown command "test nope". Run "vmsnap test --help" for usage.\n');
    const top = await run([]);
    assert.equal(top.status, 2);
    assert.equal(top.stderr, 'Missing a command. Run "vmsnap --help" for usage.\n');
    const json = await run(['test', 'ok', '--bogus', '--json']);
    assert.equal(json.status, 2);
    assert.equal(JSON.parse(json.stdout).error.code, 'USAGE');
  });

  it('prints help on stdout with exit 0', async () => {
    const r = await run(['help', 'test']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /vmsnap test ok/);
    assert.equal(r.stderr, '');
    const json = await run(['test', '--help', '--json']);
    assert.match((JSON.parse(json.stdout) as { help: string }).help, /vmsnap test ok/);
  });

  it('points a malformed value found by a command at that command\'s help', async () => {
    const r = await run(['test', 'bad-size']);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'SIZE "12X" is not a size: use bytes or a number with K, M, G or T (e.g. 4096, 64K, 10G). Run "vmsnap test bad-size --help" for usage.\n');
  });

  it('words an image that needs a check or a repair with the vmsnap command that does it', async () => {
    const path = '/x/disk.qcow2';
    const conditions = new Registry<CliContext>([
      {
        name: 'test',
        summary: 'test commands',
        commands: [
          failing('damaged', new ImageError('INVALID_IMAGE', `${path} is damaged: L1 entry 0 has reserved bits set.`, path, 'damaged')),
          failing('dirty', new ImageError('READ_ONLY', `${path} was not closed cleanly (dirty bit set); it needs a repair before it can be written to.`, path, 'dirty')),
          failing('corrupt', new ImageError('MARKED_CORRUPT', `${path} is marked corrupt; it needs a repair before it can be used.`, path, 'marked-corrupt')),
        ],
      },
    ]);
    const expected: Record<string, string> = {
      damaged: `${path} is damaged: L1 entry 0 has reserved bits set. Check it with "vmsnap image check".`,
      dirty: `${path} was not closed cleanly (dirty bit set); repair it with "vmsnap image check --repair" before writing to it.`,
      corrupt: `${path} is marked corrupt; repair it with "vmsnap image check --repair" (or "qemu-img check -r all") before using it.`,
    };
    for (const [name, sentence] of Object.entries(expected)) {
      assert.deepEqual(await runCaptured(['test', name], { registry: conditions }), { status: 1, stdout: '', stderr: `${sentence}\n` });
      const json = await runCaptured(['test', name, '--json'], { registry: conditions });
      assert.equal((JSON.parse(json.stdout) as { error: { message: string } }).error.message, sentence);
    }
  });
});
