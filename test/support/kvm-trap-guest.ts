// A boot sector that nested KVM cannot run but TCG and KVM on real hardware can: it switches to protected mode
// and, before reloading CS, returns with a 16-bit `iret` into a protected-mode code segment. Without
// "unrestricted guest" (nested VMX), KVM emulates instructions while CS still holds its real-mode value, and its
// emulator has no protected-mode IRET: QEMU stops the guest in the `internal-error` run state ("KVM internal
// error. Suberror: 1 ... emulation failure"), as a real boot loader does on such hosts. Elsewhere the guest
// prints PMODE_OK_LINE to the serial port and halts.
import { writeFileSync } from 'node:fs';

export const PMODE_OK_LINE = 'PMODE OK';

export function kvmTrapBootSector(): Buffer {
  const code: number[] = [];
  const e = (...b: number[]): number => code.push(...b);
  e(0xfa); // cli
  e(0x31, 0xc0); // xor ax, ax
  e(0x8e, 0xd8); // mov ds, ax
  e(0x8e, 0xd0); // mov ss, ax
  e(0xbc, 0x00, 0x7c); // mov sp, 0x7c00
  const lgdt = code.length;
  e(0x0f, 0x01, 0x16, 0, 0); // lgdt [gdtr]
  e(0x0f, 0x20, 0xc0); // mov eax, cr0
  e(0x0c, 0x01); // or al, 1 (PE)
  e(0x0f, 0x22, 0xc0); // mov cr0, eax
  e(0xb8, 0x10, 0x00); // mov ax, 0x10 (data segment)
  e(0x8e, 0xd0); // mov ss, ax
  e(0x8e, 0xd8); // mov ds, ax
  e(0x9c); // pushf
  e(0x6a, 0x08); // push 0x08 (code segment)
  const push = code.length;
  e(0x68, 0, 0); // push after
  e(0xcf); // iret: loads CS from the GDT
  const after = code.length;
  for (const ch of Buffer.from(`${PMODE_OK_LINE}\n`)) e(0xba, 0xf8, 0x03, 0xb0, ch, 0xee); // mov dx, 0x3f8; mov al, ch; out dx, al
  e(0xf4, 0xeb, 0xfd); // halt: hlt; jmp halt
  while (code.length % 8 !== 0) e(0);
  const gdt = code.length;
  e(0, 0, 0, 0, 0, 0, 0, 0); // null descriptor
  e(0xff, 0xff, 0, 0, 0, 0x9a, 0x00, 0); // 0x08: 16-bit code, base 0, limit 64 KiB
  e(0xff, 0xff, 0, 0, 0, 0x92, 0x00, 0); // 0x10: 16-bit data, base 0, limit 64 KiB
  const gdtr = code.length;
  e(23, 0, ...u32(0x7c00 + gdt));
  code.splice(lgdt + 3, 2, ...u16(0x7c00 + gdtr));
  code.splice(push + 1, 2, ...u16(0x7c00 + after));
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

function u16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}

function u32(v: number): number[] {
  return [...u16(v & 0xffff), ...u16(v >>> 16)];
}

/** The boot sector as a raw disk image (1 MiB). */
export function writeKvmTrapGuest(path: string): void {
  const image = Buffer.alloc(1024 * 1024);
  kvmTrapBootSector().copy(image);
  writeFileSync(path, image);
}
