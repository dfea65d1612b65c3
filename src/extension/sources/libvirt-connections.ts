// The libvirt connections the setting `vmsnap.libvirt.connections` names: one LibvirtSource each, read in the
// background (a slow or unreachable host never holds up the library's rows), cached until a change or a Retry.
import * as vscode from 'vscode';
import { LibvirtSource, type DomainView } from '../../engine/libvirt';
import { errorMessage } from '../ui/errors';

export const LIBVIRT_CONNECTIONS_SETTING = 'libvirt.connections';

/** What a connection's read gave: its domains, or the one sentence saying why it could not be read. */
export type ConnectionRead = { ok: true; domains: DomainView[] } | { ok: false; message: string };

export class LibvirtConnections implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<string>();
  /** Fires with a connection's URI when its read ended or was forgotten (also one outside the setting, changed by a command). */
  readonly onDidChange = this.changed.event;
  private sources = new Map<string, LibvirtSource>();
  /** Connections used outside the setting (the dev machine's), made once each. */
  private readonly others = new Map<string, LibvirtSource>();
  private readonly reads = new Map<string, Promise<ConnectionRead>>();
  private readonly results = new Map<string, ConnectionRead>();
  private readonly subscription: vscode.Disposable;

  constructor() {
    this.configure();
    this.subscription = vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(`vmsnap.${LIBVIRT_CONNECTIONS_SETTING}`)) return;
      this.configure();
      this.changed.fire('');
    });
  }

  /** The connections in the setting's order (none: no virsh is ever run). */
  get uris(): string[] {
    return [...this.sources.keys()];
  }

  source(uri: string): LibvirtSource | undefined {
    return this.sources.get(uri);
  }

  /** The connection's source, also for a URI not in the setting (e.g. vmsnap.devMachineConnection). */
  sourceFor(uri: string): LibvirtSource {
    const known = this.sources.get(uri) ?? this.others.get(uri);
    if (known !== undefined) return known;
    const made = new LibvirtSource(uri);
    this.others.set(uri, made);
    return made;
  }

  /** The last finished read, if any (a row shows it while a new read runs). */
  result(uri: string): ConnectionRead | undefined {
    return this.results.get(uri);
  }

  /** The connection's domains with their snapshots, read once until forgotten; never rejects. */
  read(uri: string): Promise<ConnectionRead> {
    const source = this.sources.get(uri);
    if (source === undefined) return Promise.resolve({ ok: false, message: vscode.l10n.t('{0} is no longer in the setting vmsnap.libvirt.connections.', uri) });
    let read = this.reads.get(uri);
    if (read === undefined) {
      read = source.readAll().then(
        (domains): ConnectionRead => ({ ok: true, domains }),
        (e: unknown): ConnectionRead => ({ ok: false, message: errorMessage(e) }),
      );
      this.reads.set(uri, read);
      void read.then((r) => {
        if (this.reads.get(uri) !== read) return;
        const before = this.results.get(uri);
        this.results.set(uri, r);
        // The root is drawn again when what it says changed: read at last, unreachable or back, another count.
        const count = (x: ConnectionRead): number => (x.ok ? x.domains.length : -1);
        if (before === undefined || count(before) !== count(r) || (!before.ok && !r.ok && before.message !== r.message)) this.changed.fire(uri);
      });
    }
    return read;
  }

  /** Reads the connection again (after a change made through it, or Retry) and redraws its rows. */
  reload(uri: string): void {
    // The last result stays: the root keeps saying what it holds (not "reading…") while its rows are read again.
    this.reads.delete(uri);
    this.changed.fire(uri);
  }

  /** Forgets every read without redrawing (the tree's own refresh redraws everything). */
  forget(): void {
    this.reads.clear();
    this.results.clear();
  }

  private configure(): void {
    const wanted = vscode.workspace.getConfiguration('vmsnap').get<unknown>(LIBVIRT_CONNECTIONS_SETTING, []);
    const uris = Array.isArray(wanted) ? [...new Set(wanted.filter((u): u is string => typeof u === 'string' && u.trim() !== '').map((u) => u.trim()))] : [];
    const next = new Map<string, LibvirtSource>();
    for (const uri of uris) next.set(uri, this.sources.get(uri) ?? new LibvirtSource(uri));
    this.sources = next;
    for (const uri of [...this.reads.keys()]) if (!next.has(uri)) this.reads.delete(uri);
    for (const uri of [...this.results.keys()]) if (!next.has(uri)) this.results.delete(uri);
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}
