// Running machines with QEMU: power, status, console, snapshots of a running machine and starting from them.
export * from './errors';
export { QmpClient, withQmp } from './qmp';
export type { QmpEvent, QmpGreeting, QmpOptions } from './qmp';
export { machineStatus, qemuArgs, qemuPath, runningPid, runtimeInfo, runStateFailure } from './qemu';
export type { MachineConfig, QemuOptions, RuntimeInfo, RuntimePowerState, RuntimeStatus, StartOptions } from './qemu';
export { qemuWords, startMachine, type StartResult } from './start';
export { connectMachine, killMachine, pauseMachine, removeRuntimeFiles, resumeMachine, stopMachine, type StopOptions, type StopResult } from './control';
export { acceleratorOf, AUTO_ACCEL, isAutoAccel, watchRunState } from './accel';
export { RUNTIME_FILES, RUNTIME_FILE_NAMES, RUNTIME_LOG_FILE_NAMES, runtimeFiles, type RuntimeFiles } from './files';
export { anyFreePort, bindForwards, FORWARD_HOST, portIsFree } from './forwards';
export type { BoundForward, PortForward } from './forwards';
export { runningTops, snapshotRunning, startFromState } from './live-snapshot';
export type { RunningSnapshotRequest, RunningSnapshotResult, SnapshotOptions, StartFromStateOptions, StartFromStateResult } from './live-snapshot';
export { attachConsole, CONSOLE_ESCAPE, openConsole, serialLogTail } from './console';
export type { ConsoleStreams } from './console';
export { DEFAULT_DISPLAY, DISPLAY_DEVICES, isDisplayDevice, type DisplayDevice } from './display';
export { screendump, type ScreendumpFormat } from './screendump';
