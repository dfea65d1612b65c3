// Which accelerator a machine runs with, and the fallback to TCG when KVM cannot run its guest. Under the auto
// accelerator (kvm:tcg) a guest KVM stops with an internal error (QEMU's `internal-error` run state; typical of
// nested virtualisation) is started again once with TCG, and the machine remembers it (manifest `kvmFailedAt`),
// so later starts go straight to TCG. With KVM asked for explicitly the failure is reported, never worked round.
import { acceleratorOf, isAutoAccel, type QemuOptions } from '../runtime';
import type { Manifest } from './manifest';

export const KVM_FALLBACK_NOTICE = 'KVM could not run this guest; it runs with TCG (slower).';

/** How long a start under auto watches a KVM guest for the internal error (the status check catches later ones). */
export const DEFAULT_ACCEL_WATCH_MS = 3000;

/** The accelerator list to start the machine with: TCG alone once KVM failed on it under auto. */
export function startAccel(qemu: QemuOptions, m: Pick<Manifest, 'kvmFailedAt'>): string {
  const configured = acceleratorOf(qemu);
  return isAutoAccel(configured) && m.kvmFailedAt !== undefined ? 'tcg' : configured;
}

/** A start should watch its guest for KVM's internal error only when KVM runs it under auto (so TCG can take over). */
export function shouldWatch(qemu: QemuOptions, accelInUse: 'kvm' | 'tcg' | null): boolean {
  return accelInUse === 'kvm' && isAutoAccel(acceleratorOf(qemu));
}

/**
 * What to do about the run state of a machine's QEMU: fall back to TCG (auto, KVM in use, internal error), or
 * nothing (the failure, if any, is reported as it is).
 */
export function accelVerdict(qemu: QemuOptions, runState: string | null, accelInUse: 'kvm' | 'tcg' | null): 'fall-back' | 'as-is' {
  return runState === 'internal-error' && shouldWatch(qemu, accelInUse) ? 'fall-back' : 'as-is';
}

/** The notice a status carries: the machine runs with TCG because KVM failed on it under auto. */
export function accelNotice(qemu: QemuOptions, m: Pick<Manifest, 'kvmFailedAt'>, accelInUse: 'kvm' | 'tcg' | null): string | null {
  return accelInUse === 'tcg' && m.kvmFailedAt !== undefined && isAutoAccel(acceleratorOf(qemu)) ? KVM_FALLBACK_NOTICE : null;
}
