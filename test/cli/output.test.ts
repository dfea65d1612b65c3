import { strict as assert } from 'node:assert';
import { Output, type CliIo } from '../../src/cli/output';

function capture(isTTY: boolean, env: Record<string, string> = {}): { io: CliIo; stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s), isTTY }, env },
    stdout: () => out,
    stderr: () => err,
  };
}

describe('cli output', () => {
  it('redraws a percentage on a terminal and erases it before the next output', () => {
    const c = capture(true);
    const out = new Output(c.io, false);
    const p = out.progress('Converting a.qcow2');
    p.update(0, 200);
    p.update(1, 200); // same percentage: not redrawn
    p.update(100, 200);
    out.print('Converted.');
    p.finish();
    assert.equal(c.stderr(), '\rConverting a.qcow2: 0%\rConverting a.qcow2: 50%\r\x1b[K');
    assert.equal(c.stdout(), 'Converted.\n');
  });

  it('shows no progress when stderr is not a terminal, unless VMSNAP_PROGRESS=1', () => {
    const quiet = capture(false);
    const p = new Output(quiet.io, false).progress('Converting');
    p.update(5, 10);
    p.finish();
    assert.equal(quiet.stderr(), '');
    const logged = capture(false, { VMSNAP_PROGRESS: '1' });
    const q = new Output(logged.io, false).progress('Converting');
    q.update(5, 10);
    q.finish();
    assert.equal(logged.stderr(), '\rConverting: 50%\n');
  });

  it('prints only the JSON document under --json, and refuses a second one', () => {
    const c = capture(false);
    const out = new Output(c.io, true);
    out.print('for people');
    out.document({ a: 1 });
    assert.deepEqual(JSON.parse(c.stdout()), { a: 1 });
    assert.throws(() => out.document({ b: 2 }), /second JSON document/);
  });
});
