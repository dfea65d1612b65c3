import { strict as assert } from 'node:assert';
import { isUsageError, parseArgs, Registry, type Command, type CommandGroup, type Invocation, type Verb } from '../../src/cli/args';
import { helpText, usageLine } from '../../src/cli/help';

const run = async (): Promise<number> => 0;

const create: Command = {
  name: 'create',
  summary: 'make an image',
  args: [
    { name: 'FILE', description: 'the image' },
    { name: 'SIZE', description: 'its size', optional: true },
  ],
  flags: [
    { name: 'backing', kind: 'value', valueName: 'FILE', description: 'backing file' },
    { name: 'extended-l2', kind: 'boolean', description: 'subclusters' },
  ],
  run,
};
const info: Command = { name: 'info', summary: 'describe', args: [{ name: 'FILE', description: 'the image' }], flags: [{ name: 'chain', kind: 'boolean', description: 'all layers' }], run };
const image: CommandGroup = { name: 'image', summary: 'images', commands: [create, info] };
const clone: Command = { name: 'clone', summary: 'clone a machine', args: [{ name: 'SRC', description: 's' }, { name: 'DST', description: 'd' }], flags: [{ name: 'linked', kind: 'boolean', description: 'linked' }], run };
const write: Command = {
  name: 'write',
  summary: 'write',
  args: [{ name: 'FILE', description: 'the image' }],
  flags: [
    { name: 'pattern', kind: 'value', valueName: 'BYTE', description: 'a byte' },
    { name: 'sync', kind: 'boolean', description: 'flush' },
    { name: 'zero', kind: 'boolean', description: 'zeros' },
  ],
  choices: [{ flags: ['pattern', 'zero'], required: true }],
  run,
};
image.commands.push(write);
const registry = new Registry<unknown>([image, clone]);

function invocation(argv: string[]): { command: string; inv: Invocation } {
  const r = parseArgs(argv, registry);
  assert.equal(r.kind, 'run');
  if (r.kind !== 'run') throw new Error('unreachable');
  return { command: r.command.name, inv: r.invocation };
}

function usageError(argv: string[]): { message: string; helpPath: readonly string[] } {
  try {
    parseArgs(argv, registry);
  } catch (e) {
    assert.ok(isUsageError(e), `expected a UsageError, got ${String(e)}`);
    return { message: e.message, helpPath: e.helpPath };
  }
  assert.fail(`expected a usage error for ${argv.join(' ')}`);
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return assert.fail('expected an error');
}

describe('cli argument parser', () => {
  it('resolves verb, subverb, positionals and flags', () => {
    const { command, inv } = invocation(['image', 'create', 'a.qcow2', '10G', '--backing', 'b.qcow2', '--extended-l2']);
    assert.equal(command, 'create');
    assert.deepEqual(inv.path, ['image', 'create']);
    assert.equal(inv.required('FILE'), 'a.qcow2');
    assert.equal(inv.arg('SIZE'), '10G');
    assert.equal(inv.value('backing'), 'b.qcow2');
    assert.equal(inv.flag('extended-l2'), true);
    assert.equal(inv.global.json, false);
    assert.equal(inv.global.library, undefined);
  });

  it('takes flags anywhere, before the verb too, in --flag value and --flag=value forms', () => {
    const { inv } = invocation(['--backing=b.qcow2', '--library', '/lib', 'image', '--json', 'create', 'a.qcow2']);
    assert.equal(inv.value('backing'), 'b.qcow2');
    assert.equal(inv.global.library, '/lib');
    assert.equal(inv.global.json, true);
    assert.equal(inv.required('FILE'), 'a.qcow2');
    assert.equal(inv.arg('SIZE'), undefined);
    // The value of a flag before the verb is not taken for the verb.
    const second = invocation(['--library', 'image', 'image', 'info', 'x']);
    assert.equal(second.inv.global.library, 'image');
    assert.equal(second.inv.required('FILE'), 'x');
  });

  it('keeps values that look like flags after --, and a lone - as an argument', () => {
    const { inv } = invocation(['image', 'info', '--', '--chain']);
    assert.equal(inv.required('FILE'), '--chain');
    assert.equal(inv.flag('chain'), false);
    assert.equal(invocation(['image', 'info', '-']).inv.required('FILE'), '-');
  });

  it('runs a verb without subverbs', () => {
    const { command, inv } = invocation(['clone', 'a', 'b', '--linked']);
    assert.equal(command, 'clone');
    assert.deepEqual(inv.path, ['clone']);
    assert.equal(inv.flag('linked'), true);
  });

  it('treats asking for a flag or argument the command does not declare as a programming error, not as absent', () => {
    const { inv } = invocation(['image', 'create', 'a.qcow2', '--extended-l2']);
    // A typo in a command's code must not read as "not given".
    assert.throws(() => inv.flag('extended-l3'), /does not declare the flag --extended-l3/);
    assert.throws(() => inv.value('backign'), /does not declare the value flag --backign/);
    assert.throws(() => inv.arg('SIEZ'), /does not declare the argument SIEZ/);
    assert.throws(() => inv.required('FIEL'), /does not declare the argument FIEL/);
    // Each accessor reads its own kind: a value flag is not a boolean one, nor the reverse.
    assert.throws(() => inv.flag('backing'), /does not declare the flag --backing/);
    assert.throws(() => inv.value('extended-l2'), /does not declare the value flag --extended-l2/);
    assert.ok(!isUsageError(catchError(() => inv.flag('extended-l3'))), 'a programming error is not the user\'s wrong usage');
    // Global flags are declared for every command.
    assert.equal(inv.flag('json'), false);
    assert.equal(inv.value('library'), undefined);
  });

  it('answers help requests at every level', () => {
    assert.deepEqual(parseArgs(['--help'], registry), { kind: 'help', path: [] });
    assert.deepEqual(parseArgs(['help'], registry), { kind: 'help', path: [] });
    assert.deepEqual(parseArgs(['help', 'image'], registry), { kind: 'help', path: ['image'] });
    assert.deepEqual(parseArgs(['help', 'image', 'create'], registry), { kind: 'help', path: ['image', 'create'] });
    assert.deepEqual(parseArgs(['image', '--help'], registry), { kind: 'help', path: ['image'] });
    assert.deepEqual(parseArgs(['image', 'create', '-h'], registry), { kind: 'help', path: ['image', 'create'] });
    // Help wins over a missing argument.
    assert.deepEqual(parseArgs(['image', 'info', '--help'], registry), { kind: 'help', path: ['image', 'info'] });
  });

  it('reports wrong usage with the command whose help explains it', () => {
    assert.deepEqual(usageError([]), { message: 'Missing a command.', helpPath: [] });
    assert.match(usageError(['imgae', 'info', 'x']).message, /^Unknown command "imgae"\. Did you mean "image"\?$/);
    assert.deepEqual(usageError(['image']).helpPath, ['image']);
    assert.match(usageError(['image']).message, /needs a subcommand: create, info, write\./);
    assert.match(usageError(['image', 'inof', 'x']).message, /^Unknown command "image inof"\. Did you mean "info"\?$/);
    const unknownFlag = usageError(['image', 'info', 'x', '--chian']);
    assert.match(unknownFlag.message, /^Unknown option --chian for "vmsnap image info"\. Did you mean "--chain"\?$/);
    assert.deepEqual(unknownFlag.helpPath, ['image', 'info']);
    // A flag of another command is unknown here.
    assert.match(usageError(['image', 'info', 'x', '--backing', 'y']).message, /Unknown option --backing/);
    assert.match(usageError(['image', 'info', 'x', '-z']).message, /Unknown option -z/);
    assert.match(usageError(['image', 'info']).message, /missing its FILE argument/);
    assert.match(usageError(['image', 'info', 'x', 'y']).message, /Unexpected argument "y"/);
    assert.match(usageError(['image', 'create', 'a', '--backing']).message, /--backing needs a value/);
    assert.match(usageError(['image', 'info', 'x', '--chain=yes']).message, /--chain takes no value/);
    assert.match(usageError(['image', 'info', 'x', '--chain', '--chain']).message, /--chain is given more than once/);
    assert.match(usageError(['help', 'nope']).message, /Unknown command "nope"/);
  });

  it('enforces flags that exclude each other, and shows them as one choice in the usage', () => {
    assert.equal(invocation(['image', 'write', 'f', '--zero']).inv.flag('zero'), true);
    assert.equal(invocation(['image', 'write', 'f', '--pattern', '7']).inv.value('pattern'), '7');
    assert.equal(usageError(['image', 'write', 'f']).message, 'Give one of --pattern BYTE or --zero.');
    assert.equal(usageError(['image', 'write', 'f', '--zero', '--pattern=1']).message, 'Give only one of --pattern BYTE or --zero.');
    assert.equal(usageLine(['image', 'write'], write), 'vmsnap image write FILE (--pattern BYTE | --zero) [--sync]');
    assert.throws(() => new Registry([{ ...clone, choices: [{ flags: ['linked', 'full'], required: false }] }]), /--full in a choice but does not declare it/);
  });

  it('refuses registrations that would make the grammar ambiguous', () => {
    const flagAs = (kind: 'boolean' | 'value'): Verb => ({ ...clone, name: 'other', flags: [{ name: 'backing', kind, description: '' }] });
    assert.doesNotThrow(() => new Registry([image, flagAs('value')]));
    assert.throws(() => new Registry([image, image]), /registered twice/);
    assert.throws(() => new Registry([{ ...clone, flags: [{ name: 'json', kind: 'boolean', description: '' }] }]), /global flag --json/);
    assert.throws(() => new Registry([{ ...clone, name: 'help' }]), /registered twice/);
  });

  it('reads a flag that is a boolean in one command and takes a value in another, after the verb words', () => {
    const other: Verb = { ...clone, name: 'other', args: [], flags: [{ name: 'backing', kind: 'boolean', description: '' }] };
    const mixed = new Registry([image, other]);
    const created = parseArgs(['image', 'create', 'f', '--backing', 'base.qcow2'], mixed);
    assert.equal(created.kind === 'run' ? created.invocation.value('backing') : null, 'base.qcow2');
    const flagged = parseArgs(['other', '--backing'], mixed);
    assert.equal(flagged.kind === 'run' ? flagged.invocation.flag('backing') : null, true);
  });

  it('generates usage and help from the registrations', () => {
    assert.equal(usageLine(['image', 'create'], create), 'vmsnap image create FILE [SIZE] [--backing FILE] [--extended-l2]');
    const top = helpText(registry, []);
    assert.match(top, /image create\s+make an image/);
    assert.match(top, /image info\s+describe/);
    assert.match(top, /clone\s+clone a machine/);
    assert.match(top, /--json/);
    const verb = helpText(registry, ['image']);
    assert.match(verb, /vmsnap image create FILE \[SIZE\]/);
    assert.match(verb, /vmsnap image info FILE \[--chain\]/);
    const one = helpText(registry, ['image', 'create']);
    assert.match(one, /^Usage: vmsnap image create FILE \[SIZE\]/);
    assert.match(one, /--backing FILE\s+backing file/);
    assert.match(one, /SIZE\s+its size/);
  });
});
