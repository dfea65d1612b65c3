// Where the workspace's git repository stands (branch, commit), read through the built-in git extension.
import * as vscode from 'vscode';

// The few parts of the built-in git extension's API (extensions/git/src/api/git.d.ts, version 1) used here.
interface GitCommit {
  hash: string;
  message: string;
}
interface GitBranch {
  name?: string;
  commit?: string;
}
interface GitRepository {
  rootUri: vscode.Uri;
  state: { HEAD: GitBranch | undefined };
  getCommit(ref: string): Promise<GitCommit>;
}
interface GitApi {
  repositories: GitRepository[];
}
interface GitExtension {
  enabled: boolean;
  getAPI(version: 1): GitApi;
}

export interface GitPosition {
  root: string;
  /** Branch name, or undefined on a detached HEAD. */
  branch: string | undefined;
  commit: string;
  subject: string;
}

/** Where the workspace's git repository is (branch and commit), when the built-in git extension knows one. */
export async function gitPosition(): Promise<GitPosition | undefined> {
  try {
    const ext = vscode.extensions.getExtension<GitExtension>('vscode.git');
    if (!ext) return undefined;
    const git = ext.isActive ? ext.exports : await ext.activate();
    if (!git.enabled) return undefined;
    const api = git.getAPI(1);
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const repo =
      api.repositories.find((r) => folder !== undefined && (folder === r.rootUri.fsPath || folder.startsWith(`${r.rootUri.fsPath}/`))) ?? api.repositories[0];
    const head = repo?.state.HEAD;
    if (!repo || !head?.commit) return undefined;
    const subject = await repo.getCommit(head.commit).then(
      (c) => c.message.split('\n')[0] ?? '',
      () => '',
    );
    return { root: repo.rootUri.fsPath, branch: head.name, commit: head.commit, subject };
  } catch {
    // No git, or not a repository: a checkpoint is named from the time alone.
    return undefined;
  }
}
