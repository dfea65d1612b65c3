// Which machine a Remote-SSH window is in, from its authority, and the authority our windows are opened with.
import * as assert from 'node:assert/strict';
import { hexAuthority, machineForRemoteAuthority, parseRemoteSshAuthority, remoteHomePath, remoteSshAuthority } from '../../src/extension/ssh/remote-authority';

const machines = [
  { id: 'a1', name: 'dev-vm', sshPort: 40022 },
  { id: 'b2', name: 'Build Box', sshPort: null },
  { id: 'c3', name: 'other', sshPort: 40023 },
];

describe('Remote-SSH authorities', () => {
  it('our windows are opened on the alias of the machine\'s Host block, in the guest user\'s home', () => {
    assert.equal(remoteSshAuthority('dev-vm'), 'ssh-remote+vmsnap-dev-vm');
    assert.equal(remoteSshAuthority('Build Box'), 'ssh-remote+vmsnap-build-box');
    assert.equal(remoteHomePath('dev'), '/home/dev');
    assert.equal(remoteHomePath('root'), '/root');
  });

  it('an alias names its machine, running or not', () => {
    assert.equal(machineForRemoteAuthority('ssh-remote+vmsnap-dev-vm', machines)?.id, 'a1');
    assert.equal(machineForRemoteAuthority('ssh-remote+vmsnap-build-box', machines)?.id, 'b2');
    assert.equal(machineForRemoteAuthority('ssh-remote+VMSNAP-DEV-VM', machines)?.id, 'a1', 'host names are case-insensitive');
    assert.equal(machineForRemoteAuthority('ssh-remote%2Bvmsnap-dev-vm', machines)?.id, 'a1', 'an escaped "+" as in a URI');
  });

  it('the hex JSON form and user@host:port name the running machine whose SSH forward has that port on 127.0.0.1', () => {
    const hex = hexAuthority({ hostName: '127.0.0.1', port: 40023, user: 'dev' });
    assert.match(hex, /^ssh-remote\+7b22686f73744e616d65223a/);
    assert.deepEqual(parseRemoteSshAuthority(hex), { kind: 'address', host: '127.0.0.1', port: 40023, user: 'dev' });
    assert.equal(machineForRemoteAuthority(hex, machines)?.id, 'c3');
    assert.equal(machineForRemoteAuthority(hexAuthority({ hostName: 'localhost', port: 40022, user: 'x' }), machines)?.id, 'a1');
    assert.equal(machineForRemoteAuthority('ssh-remote+dev@127.0.0.1:40022', machines)?.id, 'a1');
  });

  it('anything else is no machine of ours: other hosts, other ports, other kinds of remote, a bare host', () => {
    assert.equal(machineForRemoteAuthority(hexAuthority({ hostName: '10.0.0.5', port: 40022, user: 'dev' }), machines), undefined);
    assert.equal(machineForRemoteAuthority(hexAuthority({ hostName: '127.0.0.1', port: 22, user: 'dev' }), machines), undefined);
    assert.equal(machineForRemoteAuthority('ssh-remote+dev@127.0.0.1', machines), undefined, 'port 22 is no forward of ours');
    assert.equal(machineForRemoteAuthority('ssh-remote+myserver', machines), undefined);
    assert.equal(machineForRemoteAuthority('ssh-remote+vmsnap-gone', machines), undefined);
    assert.equal(machineForRemoteAuthority('wsl+Ubuntu', machines), undefined);
    assert.equal(machineForRemoteAuthority('127.0.0.1:8080', machines), undefined, 'code-server\'s own authority');
    assert.equal(machineForRemoteAuthority('ssh-remote+7b226e6f74223a317d', machines), undefined, 'hex JSON without hostName');
    assert.equal(machineForRemoteAuthority('ssh-remote+', machines), undefined);
  });

  it('names that reduce to one alias: the running one when exactly one runs, else none', () => {
    const twins = [
      { id: 'x', name: 'dev vm', sshPort: null },
      { id: 'y', name: 'dev-vm', sshPort: 40100 },
    ];
    assert.equal(machineForRemoteAuthority('ssh-remote+vmsnap-dev-vm', twins)?.id, 'y');
    assert.equal(machineForRemoteAuthority('ssh-remote+vmsnap-dev-vm', twins.map((m) => ({ ...m, sshPort: null }))), undefined);
  });
});
