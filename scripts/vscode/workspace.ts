// Scratch folders the test workbench opens: a git repository (so checkpoints see a branch and a commit).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function scratchWorkspace(prefix = 'vmsnap-workspace-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'README.md'), '# A project developed inside a VM\n');
  const git = (...args: string[]): void => {
    execFileSync('git', args, { cwd: dir, stdio: 'ignore', env: { ...process.env, GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 'test@example.invalid', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 'test@example.invalid' } });
  };
  try {
    git('init', '-q', '-b', 'feature/checkpoints');
    git('add', '.');
    git('commit', '-q', '-m', 'Start the project');
  } catch {
    // No git: checkpoints are then named from the time alone, and the test that needs git says so.
  }
  return dir;
}
