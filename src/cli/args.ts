// The command line's grammar: `vmsnap [global flags] VERB [SUBVERB] ARGS... [flags]`, flags anywhere.
// Commands are declared as data (names, arguments, flags, a run function) so parsing and help come from one source.

/** Wrong usage: an unknown verb or flag, a missing or malformed argument. Exit status 2, with a hint to --help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    /** The command path whose --help explains the fix ([] for the top level). */
    readonly helpPath: readonly string[] = [],
  ) {
    super(message);
  }
}

export function isUsageError(e: unknown): e is UsageError {
  return e instanceof Error && e.name === 'UsageError';
}

export interface FlagSpec {
  /** Without the leading dashes: 'backing-format'. */
  name: string;
  /** 'boolean' flags take no value; 'value' flags take `--name value` or `--name=value`. */
  kind: 'boolean' | 'value';
  /** Shown in help for value flags: --backing FILE. */
  valueName?: string;
  description: string;
}

export interface ArgSpec {
  /** Upper-case, as help shows it: FILE, SIZE. */
  name: string;
  description: string;
  optional?: boolean;
}

export interface FlagChoice {
  flags: string[];
  required: boolean;
  /** Why one is required, said before the flags when none is given: "Reverting throws away the current state". */
  reason?: string;
}

/** What a command's run function receives. */
export interface Invocation {
  /** The words that named the command: ['image', 'create']. */
  readonly path: readonly string[];
  readonly global: GlobalOptions;
  // Each accessor throws a plain Error (a bug, not wrong usage) for a name the command does not declare.
  /** A positional argument by its spec name (undefined only for optional ones left out). */
  arg(name: string): string | undefined;
  /** A positional argument the spec declares required. */
  required(name: string): string;
  /** Whether a declared boolean flag was given. */
  flag(name: string): boolean;
  /** A declared value flag's value, or undefined. */
  value(name: string): string | undefined;
  /** The words after the arguments (usually after `--`), for a command that declares `rest`. */
  rest(): string[];
}

export interface GlobalOptions {
  /** --json: print exactly one JSON document on stdout. */
  json: boolean;
  /** --library DIR: the machine library (used by the machine-layer verbs). */
  library: string | undefined;
  /** --connect URI: a libvirt connection the machine verbs act on instead of the library. */
  connect: string | undefined;
}

/** A leaf command: `vmsnap image create ...`, or a verb with no subverbs (`vmsnap clone ...`). */
export interface Command<Context = unknown> {
  name: string;
  summary: string;
  /** Longer text for `--help`, after the usage line. */
  description?: string;
  args: ArgSpec[];
  /** Words after the arguments that the command passes on (e.g. a remote command after `--`). */
  rest?: ArgSpec;
  flags: FlagSpec[];
  /** Flags that exclude each other (by name); `required`: exactly one must be given. */
  choices?: FlagChoice[];
  examples?: string[];
  /** Returns the exit status. */
  run(inv: Invocation, context: Context): Promise<number>;
}

/** A verb with subverbs: `vmsnap image create|info|...`. */
export interface CommandGroup<Context = unknown> {
  name: string;
  summary: string;
  commands: Command<Context>[];
}

export type Verb<Context = unknown> = Command<Context> | CommandGroup<Context>;

export function isGroup<C>(v: Verb<C>): v is CommandGroup<C> {
  return 'commands' in v;
}

export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'library', kind: 'value', valueName: 'DIR', description: 'the machine library folder' },
  { name: 'connect', kind: 'value', valueName: 'URI', description: 'act on a libvirt connection (qemu:///system, qemu+ssh://user@host/system) instead of the library' },
  { name: 'json', kind: 'boolean', description: 'print one JSON document on stdout' },
  { name: 'help', kind: 'boolean', description: 'show help for the command' },
];

/**
 * The registered verbs, checked once: unique names and well-formed commands. A flag name may be a boolean in one
 * command and take a value in another (`image read --sha256`, `vm create --sha256 HEX`): the first pass, which only
 * looks for the verb words, then reads it as a boolean, so such a flag's value must come after the verb words.
 */
export class Registry<Context = unknown> {
  readonly verbs: readonly Verb<Context>[];
  /** Every flag name -> its kind over all commands ('mixed': both); lets the first pass skip flag values before the verb is known. */
  private readonly kinds = new Map<string, FlagSpec['kind'] | 'mixed'>();

  constructor(verbs: readonly Verb<Context>[]) {
    this.verbs = verbs;
    for (const f of GLOBAL_FLAGS) this.kinds.set(f.name, f.kind);
    const verbNames = new Set<string>(['help']);
    for (const v of verbs) {
      if (verbNames.has(v.name)) throw new Error(`The verb "${v.name}" is registered twice.`);
      verbNames.add(v.name);
      const commands = isGroup(v) ? v.commands : [v];
      const names = new Set<string>();
      for (const c of commands) {
        if (isGroup(v)) {
          if (names.has(c.name)) throw new Error(`"${v.name} ${c.name}" is registered twice.`);
          names.add(c.name);
        }
        this.checkCommand(c, isGroup(v) ? `${v.name} ${c.name}` : v.name);
      }
    }
  }

  private checkCommand(c: Command<Context>, label: string): void {
    const seen = new Set<string>();
    for (const f of c.flags) {
      if (seen.has(f.name)) throw new Error(`"${label}" declares --${f.name} twice.`);
      seen.add(f.name);
      if (GLOBAL_FLAGS.some((g) => g.name === f.name)) throw new Error(`"${label}" redeclares the global flag --${f.name}.`);
      const kind = this.kinds.get(f.name);
      this.kinds.set(f.name, kind !== undefined && kind !== f.kind ? 'mixed' : f.kind);
    }
    for (const choice of c.choices ?? []) {
      for (const name of choice.flags) {
        if (!seen.has(name)) throw new Error(`"${label}" lists --${name} in a choice but does not declare it.`);
      }
    }
    let optionalSeen = false;
    for (const a of c.args) {
      if (optionalSeen && !a.optional) throw new Error(`"${label}": required ${a.name} after an optional argument.`);
      optionalSeen ||= a.optional === true;
    }
  }

  flagKind(name: string): FlagSpec['kind'] | undefined {
    const kind = this.kinds.get(name);
    return kind === 'mixed' ? 'boolean' : kind;
  }

  find(name: string): Verb<Context> | undefined {
    return this.verbs.find((v) => v.name === name);
  }
}

export type ParseResult<Context> =
  | { kind: 'help'; path: string[] }
  | { kind: 'run'; command: Command<Context>; invocation: Invocation };

interface Scan {
  positionals: string[];
  /** Flag name -> values in order (booleans record ''). */
  flags: Map<string, string[]>;
  unknown: string[];
}

/** Splits argv into positionals and flags, given how to tell a flag's kind; `--` ends the flags. */
function scan(argv: readonly string[], kindOf: (name: string) => FlagSpec['kind'] | undefined, helpPath: () => string[]): Scan {
  const out: Scan = { positionals: [], flags: new Map(), unknown: [] };
  const record = (name: string, value: string): void => {
    const values = out.flags.get(name) ?? [];
    values.push(value);
    out.flags.set(name, values);
  };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (token === '-h') {
      record('help', '');
      continue;
    }
    // A lone "-" or a negative number is an argument, not a flag.
    if (!token.startsWith('-') || token === '-' || /^-\d/.test(token)) {
      out.positionals.push(token);
      continue;
    }
    if (!token.startsWith('--')) {
      out.unknown.push(token);
      continue;
    }
    const eq = token.indexOf('=');
    const name = eq < 0 ? token.slice(2) : token.slice(2, eq);
    const kind = kindOf(name);
    if (kind === undefined) {
      out.unknown.push(`--${name}`);
      continue;
    }
    if (kind === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value.`, helpPath());
      record(name, '');
    } else if (eq >= 0) {
      record(name, token.slice(eq + 1));
    } else {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`--${name} needs a value.`, helpPath());
      record(name, value);
      i++;
    }
  }
  return out;
}

function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3; // suggest only close misspellings
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const n = nearest(word, candidates);
  return n === undefined ? '' : ` Did you mean "${n}"?`;
}

/** Resolves argv to a command and its arguments, or to a help request; throws UsageError on wrong usage. */
export function parseArgs<Context>(argv: readonly string[], registry: Registry<Context>): ParseResult<Context> {
  // First pass: only to find the verb and subverb, so flags may come before them.
  const first = scan(argv, (n) => registry.flagKind(n), () => []);
  const [verbName, ...rest] = first.positionals;
  const wantsHelp = first.flags.has('help');
  const verbNames = registry.verbs.map((v) => v.name);

  if (verbName === undefined) {
    if (wantsHelp) return { kind: 'help', path: [] };
    throw new UsageError('Missing a command.', []);
  }
  if (verbName === 'help') return { kind: 'help', path: resolveHelpPath(rest, registry) };
  const verb = registry.find(verbName);
  if (verb === undefined) throw new UsageError(`Unknown command "${verbName}".${didYouMean(verbName, verbNames)}`, []);

  let command: Command<Context>;
  let path: string[];
  if (isGroup(verb)) {
    const [subName] = rest;
    const subNames = verb.commands.map((c) => c.name);
    if (subName === undefined) {
      if (wantsHelp) return { kind: 'help', path: [verb.name] };
      throw new UsageError(`"vmsnap ${verb.name}" needs a subcommand: ${subNames.join(', ')}.`, [verb.name]);
    }
    const sub = verb.commands.find((c) => c.name === subName);
    if (sub === undefined) {
      throw new UsageError(`Unknown command "${verb.name} ${subName}".${didYouMean(subName, subNames)}`, [verb.name]);
    }
    command = sub;
    path = [verb.name, sub.name];
  } else {
    command = verb;
    path = [verb.name];
  }

  // Second pass, with exactly this command's flags.
  const own = new Map<string, FlagSpec['kind']>();
  for (const f of [...GLOBAL_FLAGS, ...command.flags]) own.set(f.name, f.kind);
  const second = scan(argv, (n) => own.get(n), () => path);
  if (second.flags.has('help')) return { kind: 'help', path };
  // The arguments as this command's own flags split them (the first pass may read a flag's value as a word).
  const positionals = second.positionals.slice(path.length);
  const label = `vmsnap ${path.join(' ')}`;
  const firstUnknown = second.unknown[0];
  if (firstUnknown !== undefined) {
    const flagNames = command.flags.map((f) => `--${f.name}`);
    throw new UsageError(`Unknown option ${firstUnknown} for "${label}".${didYouMean(firstUnknown, flagNames)}`, path);
  }
  for (const [name, values] of second.flags) {
    if (values.length > 1) throw new UsageError(`--${name} is given more than once.`, path);
  }

  const values = new Map<string, string>();
  command.args.forEach((spec, i) => {
    const v = positionals[i];
    if (v !== undefined) values.set(spec.name, v);
    else if (!spec.optional) throw new UsageError(`"${label}" is missing its ${spec.name} argument.`, path);
  });
  const extra = positionals[command.args.length];
  if (extra !== undefined && command.rest === undefined) throw new UsageError(`Unexpected argument "${extra}" for "${label}".`, path);

  for (const choice of command.choices ?? []) {
    const given = choice.flags.filter((name) => second.flags.has(name));
    const listed = choice.flags.map((name) => flagUsage(command.flags.find((f) => f.name === name)!));
    if (given.length > 1 || (choice.required && given.length === 0)) {
      const either = `${listed.slice(0, -1).join(', ')} or ${listed[listed.length - 1]}`;
      const missing = choice.reason === undefined ? `Give one of ${either}.` : `${choice.reason}: give one of ${either}.`;
      throw new UsageError(given.length > 1 ? `Give only one of ${either}.` : missing, path);
    }
  }

  // Asking for a name the command does not declare is a typo in its code: throw rather than answer "not given".
  const undeclared = (what: string): Error => new Error(`"${label}" does not declare the ${what}.`);
  const declaredArg = (name: string): string => {
    if (!command.args.some((a) => a.name === name)) throw undeclared(`argument ${name}`);
    return name;
  };
  const flagValue = (name: string): string | undefined => {
    if (own.get(name) !== 'value') throw undeclared(`value flag --${name}`);
    return second.flags.get(name)?.[0];
  };
  const invocation: Invocation = {
    path,
    global: { json: second.flags.has('json'), library: flagValue('library'), connect: flagValue('connect') },
    arg: (name) => values.get(declaredArg(name)),
    required: (name) => {
      const v = values.get(declaredArg(name));
      if (v === undefined) throw new UsageError(`"${label}" is missing its ${name} argument.`, path);
      return v;
    },
    flag: (name) => {
      if (own.get(name) !== 'boolean') throw undeclared(`flag --${name}`);
      return second.flags.has(name);
    },
    value: flagValue,
    rest: () => {
      if (command.rest === undefined) throw undeclared('rest of its arguments');
      return positionals.slice(command.args.length);
    },
  };
  return { kind: 'run', command, invocation };
}

function resolveHelpPath<C>(words: readonly string[], registry: Registry<C>): string[] {
  const [verbName, subName, extra] = words;
  if (verbName === undefined) return [];
  const verb = registry.find(verbName);
  if (verb === undefined) {
    throw new UsageError(`Unknown command "${verbName}".${didYouMean(verbName, registry.verbs.map((v) => v.name))}`, []);
  }
  if (subName === undefined || !isGroup(verb)) {
    if (subName !== undefined) throw new UsageError(`"vmsnap ${verb.name}" has no subcommands.`, [verb.name]);
    return [verb.name];
  }
  if (!verb.commands.some((c) => c.name === subName)) {
    throw new UsageError(`Unknown command "${verb.name} ${subName}".`, [verb.name]);
  }
  if (extra !== undefined) throw new UsageError(`Unexpected argument "${extra}" for "vmsnap help".`, []);
  return [verb.name, subName];
}

/** How help shows a flag: --backing FILE, --json. */
export function flagUsage(f: FlagSpec): string {
  return f.kind === 'value' ? `--${f.name} ${f.valueName ?? 'VALUE'}` : `--${f.name}`;
}
