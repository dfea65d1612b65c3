// The machine this window is in when it is a Remote-SSH window connected into one of the library's machines: the
// dev machine then needs no setting (the extension runs on the host side: extensionKind ui first).
import * as vscode from 'vscode';
import type { LibraryService } from '../library-service';
import { machineForRemoteAuthority, type MachineAddress } from '../ssh/remote-authority';

/** The Remote-SSH authority of this window (`ssh-remote+…`), from its workspace; undefined for a local window. */
export function windowRemoteAuthority(): string | undefined {
  const uri = vscode.workspace.workspaceFile ?? vscode.workspace.workspaceFolders?.[0]?.uri;
  return uri?.scheme === 'vscode-remote' && uri.authority.startsWith('ssh-remote+') ? uri.authority : undefined;
}

/**
 * Follows which machine the window's remote authority names: by its alias (`vmsnap-NAME`), or by the port of a
 * running machine's SSH forward. Looked at again whenever the library changes (a machine started, renamed).
 */
export class RemoteWindowMachine implements vscode.Disposable {
  private authority: string | undefined = windowRemoteAuthority();
  private matched: MachineAddress | undefined;
  private updating: Promise<void> = Promise.resolve();
  private readonly changed = new vscode.EventEmitter<void>();
  /** Fires when the window's machine is another one (or none any more). */
  readonly onDidChange = this.changed.event;
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly service: LibraryService) {
    this.subscriptions = [
      service.onDidChange(() => void this.update()),
      vscode.workspace.onDidChangeWorkspaceFolders(() => {
        this.authority = windowRemoteAuthority();
        void this.update();
      }),
    ];
    if (this.authority !== undefined) void this.update();
  }

  /** The id of the machine this window is in, if any. */
  get machineId(): string | undefined {
    return this.matched?.id;
  }

  get remoteAuthority(): string | undefined {
    return this.authority;
  }

  /** For the extension-host tests, which cannot open a real Remote-SSH window: as if the window had `authority`. */
  simulate(authority: string | undefined): Promise<void> {
    this.authority = authority;
    return this.update();
  }

  update(): Promise<void> {
    this.updating = this.updating.then(() => this.match()).catch(() => undefined);
    return this.updating;
  }

  private async match(): Promise<void> {
    const before = this.matched?.id;
    this.matched = this.authority === undefined ? undefined : machineForRemoteAuthority(this.authority, await this.addresses());
    if (this.matched?.id !== before) this.changed.fire();
  }

  /** Every machine with its SSH port while it runs (asked of QEMU for the running ones only). */
  private async addresses(): Promise<MachineAddress[]> {
    const lib = await this.service.library();
    return Promise.all(
      (await lib.list()).map(async (m) => ({
        id: m.id,
        name: m.name,
        sshPort: m.powerState === 'off' ? null : ((await lib.machineStatus(m.id).catch(() => undefined))?.ssh?.port ?? null),
      })),
    );
  }

  dispose(): void {
    this.changed.dispose();
    for (const s of this.subscriptions) s.dispose();
  }
}
