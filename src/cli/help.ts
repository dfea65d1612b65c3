// Usage and help text, generated from the registered commands so they can never disagree with the parser.
import { flagUsage, GLOBAL_FLAGS, isGroup, type ArgSpec, type Command, type Registry } from './args';

function argUsage(a: ArgSpec): string {
  return a.optional ? `[${a.name}]` : a.name;
}

/** The one-line synopsis: `vmsnap image write FILE OFFSET LENGTH (--pattern BYTE | --zero)`. */
export function usageLine(path: readonly string[], c: Command<unknown>): string {
  const parts = ['vmsnap', ...path, ...c.args.map(argUsage)];
  const shown = new Set<string>();
  for (const f of c.flags) {
    if (shown.has(f.name)) continue;
    const choice = c.choices?.find((ch) => ch.flags.includes(f.name));
    if (choice === undefined) {
      parts.push(`[${flagUsage(f)}]`);
      shown.add(f.name);
      continue;
    }
    // A choice is shown once, where its first flag is declared.
    const members = choice.flags.map((name) => c.flags.find((x) => x.name === name)!);
    members.forEach((m) => shown.add(m.name));
    const inner = members.map(flagUsage).join(' | ');
    parts.push(choice.required ? `(${inner})` : `[${inner}]`);
  }
  if (c.rest !== undefined) parts.push(`[-- ${c.rest.name}...]`);
  return parts.join(' ');
}

function table(rows: [string, string][], indent = '  '): string[] {
  const width = Math.max(0, ...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `${indent}${left.padEnd(width)}  ${right}`.trimEnd());
}

const GLOBAL_SECTION = ['Global options (anywhere on the line):', ...table(GLOBAL_FLAGS.map((f) => [flagUsage(f), f.description]))];

/** Help for a path: [] for the whole tool, [verb] for a verb, [verb, subverb] for one command. */
export function helpText<C>(registry: Registry<C>, path: readonly string[]): string {
  const [verbName, subName] = path;
  const verb = verbName === undefined ? undefined : registry.find(verbName);
  if (verb === undefined) {
    const lines = [
      'vmsnap: snapshots and clones of virtual machines, on qcow2 disk images.',
      '',
      'Usage: vmsnap [--library DIR | --connect URI] [--json] COMMAND [ARGS...] [--flags]',
      '',
      'Commands:',
      ...table(
        registry.verbs.flatMap((v): [string, string][] =>
          isGroup(v) ? v.commands.map((c): [string, string] => [`${v.name} ${c.name}`, c.summary]) : [[v.name, v.summary]],
        ).concat([['help [COMMAND]', 'show help for a command']]),
      ),
      '',
      ...GLOBAL_SECTION,
      '',
      'Sizes and offsets take K, M, G, T suffixes (powers of 1024): 10G, 512KiB, 0x10000.',
      'Run "vmsnap COMMAND --help" for a command\'s arguments and options.',
    ];
    return lines.join('\n') + '\n';
  }
  if (isGroup(verb)) {
    const sub = verb.commands.find((c) => c.name === subName);
    if (sub === undefined) {
      const lines = [
        `vmsnap ${verb.name}: ${verb.summary}`,
        '',
        'Usage:',
        ...verb.commands.map((c) => `  ${usageLine([verb.name, c.name], c)}`),
        '',
        'Commands:',
        ...table(verb.commands.map((c) => [c.name, c.summary])),
        '',
        ...GLOBAL_SECTION,
        '',
        `Run "vmsnap ${verb.name} COMMAND --help" for details.`,
      ];
      return lines.join('\n') + '\n';
    }
    return commandHelp([verb.name, sub.name], sub);
  }
  return commandHelp([verb.name], verb);
}

function commandHelp(path: readonly string[], c: Command<unknown>): string {
  const lines = [`Usage: ${usageLine(path, c)}`, '', c.summary];
  if (c.description) lines.push('', c.description);
  const args = c.rest === undefined ? c.args : [...c.args, c.rest];
  if (args.length > 0) lines.push('', 'Arguments:', ...table(args.map((a) => [a.name, a.description])));
  if (c.flags.length > 0) lines.push('', 'Options:', ...table(c.flags.map((f) => [flagUsage(f), f.description])));
  lines.push('', ...GLOBAL_SECTION);
  if (c.examples && c.examples.length > 0) lines.push('', 'Examples:', ...c.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}

/** The hint after a usage error. */
export function helpHint(path: readonly string[]): string {
  return `Run "vmsnap ${[...path, '--help'].join(' ')}" for usage.`;
}
