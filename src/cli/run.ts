// One run of the tool: parse, dispatch, and turn every outcome into an exit status and one readable sentence.
import { isMachineError } from '../engine/machine';
import { isSourceError } from '../engine/sources';
import { isImageError, type ImageError } from '../engine/qcow2';
import { isUsageError, parseArgs, Registry, UsageError } from './args';
import { verbs } from './commands';
import { isConnected, runConnected } from './connected';
import { machineErrorSentence, sourceErrorSentence } from './errors';
import { helpHint, helpText } from './help';
import { Output, type CliContext, type CliIo } from './output';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, as shells report a command stopped by Ctrl-C. */
export const EXIT_CANCELLED = 130;

export const registry = new Registry<CliContext>(verbs);

/** Runs the tool on argv (without "node vmsnap") and returns the exit status; never throws. */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  signal: AbortSignal,
  commands: Registry<CliContext> = registry,
): Promise<number> {
  // --json is known before parsing finishes so even a usage error can answer with a JSON document.
  const out = new Output(io, argv.includes('--json'));
  try {
    const parsed = parseArgs(argv, commands);
    if (parsed.kind === 'help') {
      const text = helpText(commands, parsed.path);
      if (out.json) out.document({ help: text });
      else io.stdout.write(text);
      return EXIT_OK;
    }
    try {
      const ctx = { out, signal };
      return await (isConnected(parsed.invocation) ? runConnected(parsed.invocation, ctx) : parsed.command.run(parsed.invocation, ctx));
    } catch (e) {
      // A malformed value found by the command (a size, a byte) points at that command's help.
      if (isUsageError(e) && e.helpPath.length === 0) throw new UsageError(e.message, parsed.invocation.path);
      throw e;
    }
  } catch (e) {
    return report(e, out, io);
  }
}

function report(e: unknown, out: Output, io: CliIo): number {
  if (isUsageError(e)) {
    out.error(`${e.message} ${helpHint(e.helpPath)}`);
    writeErrorDocument(out, 'USAGE', e.message);
    return EXIT_USAGE;
  }
  if (isImageError(e)) {
    const message = imageErrorMessage(e);
    out.error(oneLine(message));
    writeErrorDocument(out, e.code, message);
    return e.code === 'ABORTED' ? EXIT_CANCELLED : EXIT_FAILURE;
  }
  if (isMachineError(e)) {
    // A machine operation stopped by an image keeps the image's message: word it as for the image itself.
    const message = e.code === 'IMAGE_ERROR' && isImageError(e.cause) ? imageErrorMessage(e.cause) : machineErrorSentence(e);
    // An ambiguous reference names what it could mean (with tree paths), still on one line.
    const sentence = e.code === 'AMBIGUOUS' && e.candidates.length > 0 ? `${message} Candidates: ${e.candidates.join('; ')}.` : message;
    out.error(oneLine(sentence));
    if (!out.wroteDocument) out.document({ error: { code: e.code, message, candidates: e.candidates } });
    return e.code === 'ABORTED' ? EXIT_CANCELLED : EXIT_FAILURE;
  }
  if (isSourceError(e)) {
    const message = sourceErrorSentence(e);
    out.error(oneLine(message));
    if (!out.wroteDocument) out.document({ error: { code: e.code, message, ...(e.detail === null ? {} : { detail: e.detail }) } });
    return e.code === 'ABORTED' ? EXIT_CANCELLED : EXIT_FAILURE;
  }
  // A bug or an unforeseen failure: a short sentence, and the stack only when asked for.
  const message = e instanceof Error ? e.message : String(e);
  const debug = io.env.VMSNAP_DEBUG === '1';
  out.error(`vmsnap failed unexpectedly: ${oneLine(message)}${debug ? '' : ' (set VMSNAP_DEBUG=1 for details)'}`);
  if (debug && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
  writeErrorDocument(out, 'INTERNAL', message);
  return EXIT_FAILURE;
}

/** The engine says what is wrong with an image; the CLI adds which of its commands checks or repairs it. */
function imageErrorMessage(e: ImageError): string {
  const path = e.path ?? 'The image';
  switch (e.condition) {
    case 'damaged':
      return `${e.message} Check it with "vmsnap image check".`;
    case 'dirty':
      return `${path} was not closed cleanly (dirty bit set); repair it with "vmsnap image check --repair" before writing to it.`;
    case 'marked-corrupt':
      return `${path} is marked corrupt; repair it with "vmsnap image check --repair" (or "qemu-img check -r all") before using it.`;
    case undefined:
      return e.message;
  }
}

function writeErrorDocument(out: Output, code: string, message: string): void {
  if (!out.wroteDocument) out.document({ error: { code, message } });
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
