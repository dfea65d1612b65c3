// What the extension contributes to VS Code: the source of the extension's keys in package.json
// (`node scripts/vscode/manifest.mjs` writes them; user-facing strings are keys into package.nls.json).

const category = '%vmsnap.category%';

/** [id, icon or null] in palette order; titles are `%vmsnap.command.<name>%`. */
const commands = [
  ['newMachine', '$(add)'],
  ['newMachineFromImage', '$(cloud-download)'],
  ['importImage', '$(desktop-download)'],
  ['openComparison', '$(table)'],
  ['refresh', '$(refresh)'],
  ['showAutomaticCheckpoints', '$(history)'],
  ['hideAutomaticCheckpoints', '$(filter)'],
  ['startMachine', '$(play)'],
  ['stopMachine', '$(primitive-square)'],
  ['forceStopMachine', '$(stop-circle)'],
  ['pauseMachine', '$(debug-pause)'],
  ['resumeMachine', '$(debug-continue)'],
  ['openConsole', '$(terminal)'],
  ['openDisplay', '$(device-desktop)'],
  ['connectRemoteSsh', '$(remote)'],
  ['openSshTerminal', '$(terminal-bash)'],
  ['showSerialLog', '$(output)'],
  ['takeSnapshot', '$(device-camera)'],
  ['cloneMachine', '$(copy)'],
  ['promoteClone', null],
  ['renameMachine', null],
  ['deleteMachine', '$(trash)'],
  ['revealMachineFolder', null],
  ['copyDiskPath', null],
  ['revert', '$(history)'],
  ['cloneSnapshot', '$(copy)'],
  ['renameSnapshot', null],
  ['editSnapshotDescription', null],
  ['deleteSnapshot', '$(trash)'],
  ['deleteSnapshotWithChildren', null],
  ['compareWithCurrent', '$(diff)'],
  ['showInComparison', '$(table)'],
  ['showSnapshotDetails', '$(preview)'],
  ['checkpoint', '$(record)'],
  ['setDevMachine', null],
  ['showDevMachine', null],
  ['revealMachine', null],
  ['openReadme', null],
  ['renameSelected', null],
  ['deleteSelected', null],
  ['compactChains', '$(list-flat)'],
  ['indentEverySnapshot', '$(list-tree)'],
  ['retryConnection', '$(refresh)'],
];

const machine = 'view == vmsnap.machines && viewItem =~ /^(machine|cloneRef):/';
const snapshot = 'view == vmsnap.machines && viewItem =~ /^snapshot:/';
const current = 'view == vmsnap.machines && viewItem =~ /^current:/';
const off = 'viewItem =~ /:off:/';
const running = 'viewItem =~ /:running:/';
const paused = 'viewItem =~ /:paused:/';
const on = 'viewItem =~ /:(running|paused):/';
// Off (it is started first), or running with SSH and a known user (launched from a cloud image).
/** A machine launched from a cloud image: its guest user and key are known. */
const sshable = 'viewItem =~ /:guest:/';

// libvirt rows (src/extension/tree/libvirt-rows.ts): a domain's flags are its source's capabilities, a snapshot's
// the operations its source does not refuse for it.
const lvConnectionError = 'view == vmsnap.machines && viewItem =~ /^libvirtConnection:error:/';
const lvDomain = 'view == vmsnap.machines && viewItem =~ /^libvirtDomain:/';
const lvCurrent = 'view == vmsnap.machines && viewItem =~ /^libvirtCurrent:/';
const lvSnapshot = 'view == vmsnap.machines && viewItem =~ /^libvirtSnapshot:/';
const lvPausable = 'viewItem =~ /:pause:/';
// A clone the source can make of the row's state (linked, full or both), of a powered-off domain as for the library.
const lvCloneable = 'viewItem =~ /:(linkedClone|fullClone):/';

const item = (command, when, group) => ({ command: `vmsnap.${command}`, when, group });

export const contributes = {
  viewsContainers: {
    activitybar: [{ id: 'vmsnap', title: '%vmsnap.container.title%', icon: 'media/vmsnap.svg' }],
  },
  views: {
    vmsnap: [{ id: 'vmsnap.machines', name: '%vmsnap.view.machines%', icon: 'media/vmsnap.svg', contextualTitle: '%vmsnap.container.title%' }],
  },
  viewsWelcome: [
    { view: 'vmsnap.machines', contents: '%vmsnap.welcome.empty.setting%', when: 'vmsnap.state == empty && vmsnap.librarySource == setting' },
    { view: 'vmsnap.machines', contents: '%vmsnap.welcome.empty.env%', when: 'vmsnap.state == empty && vmsnap.librarySource == env' },
    { view: 'vmsnap.machines', contents: '%vmsnap.welcome.empty.default%', when: 'vmsnap.state == empty && vmsnap.librarySource == default' },
    { view: 'vmsnap.machines', contents: '%vmsnap.welcome.empty%', when: 'vmsnap.state == empty' },
    { view: 'vmsnap.machines', contents: '%vmsnap.welcome.error%', when: 'vmsnap.state == error' },
  ],
  commands: commands.map(([name, icon]) => ({
    command: `vmsnap.${name}`,
    title: `%vmsnap.command.${name}%`,
    category,
    ...(icon ? { icon } : {}),
  })),
  menus: {
    'view/title': [
      item('newMachine', 'view == vmsnap.machines', 'navigation@1'),
      item('newMachineFromImage', 'view == vmsnap.machines', 'navigation@2'),
      item('importImage', 'view == vmsnap.machines', 'navigation@3'),
      item('openComparison', 'view == vmsnap.machines', 'navigation@4'),
      item('refresh', 'view == vmsnap.machines', 'navigation@5'),
      item('showAutomaticCheckpoints', 'view == vmsnap.machines && !config.vmsnap.showAutomaticCheckpoints', 'navigation@6'),
      item('hideAutomaticCheckpoints', 'view == vmsnap.machines && config.vmsnap.showAutomaticCheckpoints', 'navigation@6'),
      item('compactChains', 'view == vmsnap.machines && !config.vmsnap.tree.compactChains', '2_tree@1'),
      item('indentEverySnapshot', 'view == vmsnap.machines && config.vmsnap.tree.compactChains', '2_tree@1'),
    ],
    'view/item/context': [
      // inline buttons: power (only what applies to the state), take a snapshot on a machine or "You are here",
      // revert on a snapshot (a running machine's snapshot keeps its memory; a revert ends the running state)
      item('connectRemoteSsh', `${machine} && viewItem =~ /:ssh:/`, 'inline@0'),
      item('startMachine', `${machine} && ${off}`, 'inline@0'),
      item('resumeMachine', `${machine} && ${paused}`, 'inline@0'),
      item('pauseMachine', `${machine} && ${running}`, 'inline@0'),
      item('stopMachine', `${machine} && ${on}`, 'inline@0'),
      item('openConsole', `${machine} && ${on}`, 'inline@0'),
      item('openDisplay', `${machine} && ${running}`, 'inline@0'),
      item('takeSnapshot', machine, 'inline@1'),
      item('takeSnapshot', current, 'inline@1'),
      item('revert', snapshot, 'inline@1'),
      // machine (and a linked clone shown under its snapshot)
      item('startMachine', `${machine} && ${off}`, '0_power@1'),
      item('resumeMachine', `${machine} && ${paused}`, '0_power@2'),
      item('pauseMachine', `${machine} && ${running}`, '0_power@3'),
      item('stopMachine', `${machine} && ${on}`, '0_power@4'),
      item('forceStopMachine', `${machine} && ${on}`, '0_power@5'),
      item('openConsole', `${machine} && ${on}`, '0_power@6'),
      item('openDisplay', machine, '0_power@7'),
      item('showSerialLog', `${machine} && ${on}`, '0_power@8'),
      item('connectRemoteSsh', `${machine} && ${sshable}`, '0_ssh@1'),
      item('openSshTerminal', `${machine} && ${sshable}`, '0_ssh@2'),
      item('takeSnapshot', machine, '1_snapshot@1'),
      item('cloneMachine', `${machine} && ${off}`, '2_clone@1'),
      item('promoteClone', `${machine} && ${off} && viewItem =~ /:linked:/`, '2_clone@2'),
      item('openComparison', machine, '3_view@1'),
      item('revealMachine', 'view == vmsnap.machines && viewItem =~ /^cloneRef:/', '3_view@2'),
      item('revealMachineFolder', machine, '3_view@3'),
      item('copyDiskPath', machine, '3_view@4'),
      item('renameMachine', machine, '4_edit@1'),
      item('setDevMachine', `${machine} && !(viewItem =~ /:dev:/)`, '4_edit@2'),
      item('deleteMachine', `${machine} && ${off}`, '9_destructive@1'),
      // "You are here"
      item('takeSnapshot', current, '1_snapshot@1'),
      item('cloneMachine', `${current} && ${off}`, '2_clone@1'),
      // snapshot
      item('revert', snapshot, '1_snapshot@1'),
      item('cloneSnapshot', `${snapshot} && ${off}`, '2_clone@1'),
      item('compareWithCurrent', snapshot, '3_view@1'),
      item('showInComparison', snapshot, '3_view@2'),
      item('showSnapshotDetails', snapshot, '3_view@0'),
      item('renameSnapshot', snapshot, '4_edit@1'),
      item('editSnapshotDescription', snapshot, '4_edit@2'),
      item('deleteSnapshot', `${snapshot} && !(viewItem =~ /:locked:/)`, '9_destructive@1'), // running machines too (block jobs)
      item('deleteSnapshotWithChildren', `${snapshot} && viewItem =~ /:children:/ && !(viewItem =~ /:locked:/)`, '9_destructive@2'),
      // libvirt: an unreachable connection's Retry, a domain's power, snapshot and clone, a snapshot's revert, clone and delete
      item('retryConnection', lvConnectionError, 'inline@0'),
      item('retryConnection', lvConnectionError, '0_connection@1'),
      item('startMachine', `${lvDomain} && ${off}`, 'inline@0'),
      item('stopMachine', `${lvDomain} && ${on}`, 'inline@0'),
      item('takeSnapshot', lvDomain, 'inline@1'),
      item('takeSnapshot', lvCurrent, 'inline@1'),
      item('revert', `${lvSnapshot} && viewItem =~ /:revert:/`, 'inline@1'),
      item('startMachine', `${lvDomain} && ${off}`, '0_power@1'),
      item('resumeMachine', `${lvDomain} && ${paused} && ${lvPausable}`, '0_power@2'),
      item('pauseMachine', `${lvDomain} && ${running} && ${lvPausable}`, '0_power@3'),
      item('stopMachine', `${lvDomain} && ${on}`, '0_power@4'),
      item('forceStopMachine', `${lvDomain} && ${on}`, '0_power@5'),
      item('takeSnapshot', lvDomain, '1_snapshot@1'),
      item('cloneMachine', `${lvDomain} && ${off} && ${lvCloneable}`, '2_clone@1'),
      item('setDevMachine', `${lvDomain} && !(viewItem =~ /:dev:/)`, '4_edit@2'),
      item('takeSnapshot', lvCurrent, '1_snapshot@1'),
      item('cloneMachine', `${lvCurrent} && ${off} && ${lvCloneable}`, '2_clone@1'),
      item('revert', `${lvSnapshot} && viewItem =~ /:revert:/`, '1_snapshot@1'),
      item('cloneSnapshot', `${lvSnapshot} && ${off} && ${lvCloneable}`, '2_clone@1'),
      item('editSnapshotDescription', `${lvSnapshot} && viewItem =~ /:describe:/`, '4_edit@2'),
      item('deleteSnapshot', `${lvSnapshot} && viewItem =~ /:delete:/`, '9_destructive@1'),
      item('deleteSnapshotWithChildren', `${lvSnapshot} && viewItem =~ /:deleteChildren:/`, '9_destructive@2'),
    ],
    commandPalette: [
      { command: 'vmsnap.showAutomaticCheckpoints', when: '!config.vmsnap.showAutomaticCheckpoints' },
      { command: 'vmsnap.hideAutomaticCheckpoints', when: 'config.vmsnap.showAutomaticCheckpoints' },
      { command: 'vmsnap.compactChains', when: '!config.vmsnap.tree.compactChains' },
      { command: 'vmsnap.indentEverySnapshot', when: 'config.vmsnap.tree.compactChains' },
      { command: 'vmsnap.revealMachine', when: 'false' },
      { command: 'vmsnap.openReadme', when: 'false' },
      { command: 'vmsnap.renameSelected', when: 'false' },
      { command: 'vmsnap.deleteSelected', when: 'false' },
      { command: 'vmsnap.retryConnection', when: 'false' },
    ],
  },
  keybindings: [
    { command: 'vmsnap.checkpoint', key: 'ctrl+alt+shift+s', mac: 'cmd+alt+shift+s' },
    // F2 and Delete act on the Machines view's selected row, with the menus' questions.
    { command: 'vmsnap.renameSelected', key: 'f2', when: 'focusedView == vmsnap.machines && !inputFocus' },
    { command: 'vmsnap.deleteSelected', key: 'delete', mac: 'cmd+backspace', when: 'focusedView == vmsnap.machines && !inputFocus' },
  ],
  configuration: {
    title: '%vmsnap.container.title%',
    properties: {
      'vmsnap.libraryFolder': {
        type: 'string',
        default: '',
        // Window, not machine: a machine-scoped value in User settings is ignored by a remote or browser
        // (code-server) window, silently. The extension runs on the UI side first, where User settings live.
        scope: 'window',
        markdownDescription: '%vmsnap.config.libraryFolder%',
      },
      'vmsnap.defaultCloneKind': {
        type: 'string',
        enum: ['linked', 'full'],
        enumDescriptions: ['%vmsnap.config.defaultCloneKind.linked%', '%vmsnap.config.defaultCloneKind.full%'],
        default: 'linked',
        markdownDescription: '%vmsnap.config.defaultCloneKind%',
      },
      'vmsnap.confirmBeforeRevert': {
        type: 'boolean',
        default: true,
        markdownDescription: '%vmsnap.config.confirmBeforeRevert%',
      },
      'vmsnap.tree.compactChains': {
        type: 'boolean',
        default: false,
        markdownDescription: '%vmsnap.config.tree.compactChains%',
      },
      'vmsnap.libvirt.connections': {
        type: 'array',
        items: { type: 'string' },
        default: [],
        scope: 'window',
        markdownDescription: '%vmsnap.config.libvirt.connections%',
      },
      'vmsnap.qemuPath': {
        type: 'string',
        default: '',
        scope: 'machine',
        markdownDescription: '%vmsnap.config.qemuPath%',
      },
      'vmsnap.accelerator': {
        type: 'string',
        enum: ['auto', 'kvm', 'tcg'],
        enumDescriptions: ['%vmsnap.config.accelerator.auto%', '%vmsnap.config.accelerator.kvm%', '%vmsnap.config.accelerator.tcg%'],
        default: 'auto',
        scope: 'machine',
        markdownDescription: '%vmsnap.config.accelerator%',
      },
      'vmsnap.devMachine': {
        type: 'string',
        default: '',
        scope: 'resource',
        markdownDescription: '%vmsnap.config.devMachine%',
      },
      'vmsnap.devMachineConnection': {
        type: 'string',
        default: '',
        scope: 'resource',
        markdownDescription: '%vmsnap.config.devMachineConnection%',
      },
      'vmsnap.showAutomaticCheckpoints': {
        type: 'boolean',
        default: true,
        markdownDescription: '%vmsnap.config.showAutomaticCheckpoints%',
      },
      'vmsnap.autoCheckpoint.runSchedule': {
        type: 'boolean',
        default: true,
        scope: 'machine',
        markdownDescription: '%vmsnap.config.autoCheckpoint.runSchedule%',
      },
      'vmsnap.autoCheckpoint.onBranchChange': {
        type: 'boolean',
        default: true,
        scope: 'resource',
        markdownDescription: '%vmsnap.config.autoCheckpoint.onBranchChange%',
      },
      'vmsnap.autoCheckpoint.beforeTasks': {
        type: 'array',
        items: { type: 'string' },
        default: [],
        scope: 'resource',
        markdownDescription: '%vmsnap.config.autoCheckpoint.beforeTasks%',
      },
    },
  },
};

// onStartupFinished: the dev machine's status item and checkpoint keybinding work in a fresh window. Activation
// reads nothing from disk; with no dev machine set it only registers (measured in test/extension/activation).
export const activationEvents = ['onStartupFinished', 'onView:vmsnap.machines', 'onWebviewPanel:vmsnap.compare'];
