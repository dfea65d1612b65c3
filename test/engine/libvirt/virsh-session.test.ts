// One virsh fed round after round on its input, against libvirt's built-in test driver (test:///default: a domain
// "test" inside the virsh process, no daemon): answers in order, a failed command as null, and a virsh that never
// answers or is missing ends the read with one sentence, leaving no process behind.
import { strict as assert } from 'node:assert';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Virsh } from '../../../src/engine/libvirt';
import { inOneVirsh } from '../../../src/engine/libvirt/virsh-session';
import { requireLibvirt } from '../../support/libvirt';
import { rejectsWith } from './source-checks';

describe('libvirt: one virsh read in rounds (test:///default)', function () {
  this.timeout(30000);
  const dir = mkdtempSync(join(tmpdir(), 'vmsnap-virsh-session-'));
  before(function () {
    requireLibvirt(this);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('answers each round in order, a later round built from an earlier answer; a failed command is null', async () => {
    const virsh = new Virsh('test:///default');
    const [first, second] = await inOneVirsh(virsh, async (round) => {
      const a = await round([['list', '--all', '--name'], ['domstate', '--domain', 'no such domain'], ['echo', 'two "words"']]);
      const name = (a[0] ?? '').trim();
      return [a, await round([['domstate', '--domain', name], ['dominfo', '--domain', name]])];
    });
    assert.deepEqual(first, ['test\n', null, 'two "words"']);
    assert.equal(second?.[0]?.trim(), 'running');
    assert.match(second?.[1] ?? '', /^Id:\s+1$/m);
  });

  it('a virsh that never answers is killed at the time-out; a missing one says what to install', async () => {
    const silent = join(dir, 'silent-virsh');
    writeFileSync(silent, '#!/bin/sh\nexec sleep 60\n');
    chmodSync(silent, 0o755);
    const t0 = Date.now();
    await rejectsWith(inOneVirsh(new Virsh('test:///default', { virsh: silent }), (round) => round([['list']]), { timeoutMs: 1000 }), 'TIMEOUT', 'a silent virsh', /did not answer within 1 s/);
    assert.ok(Date.now() - t0 < 5000, `ended in ${Date.now() - t0} ms`);
    await rejectsWith(inOneVirsh(new Virsh('test:///default', { virsh: join(dir, 'no-virsh') }), (round) => round([['list']])), 'TOOL_MISSING', 'no virsh');
  });

  it('a refused connection rejects the first round with virsh\'s sentence', async () => {
    await rejectsWith(inOneVirsh(new Virsh('bogus+x://host/'), (round) => round([['list']])), 'FAILED', 'a bad URI', /^libvirt refused list: .*transport/);
  });
});
