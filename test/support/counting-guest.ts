// A test guest that needs no download: a 512-byte x86 boot sector, assembled here from bytes, that counts up and
// prints the count to the first serial port. The count lives in RAM (0000:0600), so a memory snapshot restored
// later continues from the saved value. It paces itself on the BIOS timer tick (18.2 Hz) with `hlt`, so it
// counts at the same rate on TCG and KVM and leaves the host's CPU idle between lines.
import { writeFileSync } from 'node:fs';

/** Lines per second the guest prints (one per BIOS timer tick). */
export const COUNTS_PER_SECOND = 18.2;

/** A tiny assembler: bytes with labels and relative jump fix-ups, enough for one boot sector. */
class Code {
  private readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string; size: 1 | 2 }[] = [];

  emit(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }

  label(name: string): this {
    this.labels.set(name, this.bytes.length);
    return this;
  }

  /** An opcode followed by a relative displacement (8 or 16 bits) to a label. */
  rel(opcode: number[], label: string, size: 1 | 2): this {
    this.emit(...opcode);
    this.fixups.push({ at: this.bytes.length, label, size });
    return this.emit(...new Array<number>(size).fill(0));
  }

  assemble(): Buffer {
    for (const f of this.fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) throw new Error(`guest: no label ${f.label}`);
      const disp = target - (f.at + f.size);
      if (f.size === 1) {
        if (disp < -128 || disp > 127) throw new Error(`guest: jump to ${f.label} out of range`);
        this.bytes[f.at] = disp & 0xff;
      } else {
        this.bytes[f.at] = disp & 0xff;
        this.bytes[f.at + 1] = (disp >> 8) & 0xff;
      }
    }
    if (this.bytes.length > 510) throw new Error('guest: code does not fit a boot sector');
    const sector = Buffer.alloc(512);
    Buffer.from(this.bytes).copy(sector);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    return sector;
  }
}

/** `out dx, al` of one byte to a port. */
function outb(code: Code, port: number, value: number): void {
  code.emit(0xba, port & 0xff, port >> 8); // mov dx, port
  code.emit(0xb0, value); // mov al, value
  code.emit(0xee); // out dx, al
}

/** The boot sector: prints the 32-bit count as 8 hex digits and a newline, once per timer tick. */
export function countingBootSector(): Buffer {
  const c = new Code();
  c.emit(0xfa); // cli
  c.emit(0x31, 0xc0); // xor ax, ax
  c.emit(0x8e, 0xd8); // mov ds, ax
  c.emit(0x8e, 0xd0); // mov ss, ax
  c.emit(0xbc, 0x00, 0x7c); // mov sp, 0x7c00
  c.emit(0xfb); // sti: the BIOS timer interrupt advances the tick count at 0040:006C
  // 16550 UART at 0x3F8: interrupts off, 115200 baud (divisor 1), 8N1, FIFOs on, DTR+RTS.
  outb(c, 0x3f9, 0x00);
  outb(c, 0x3fb, 0x80);
  outb(c, 0x3f8, 0x01);
  outb(c, 0x3f9, 0x00);
  outb(c, 0x3fb, 0x03);
  outb(c, 0x3fa, 0xc7);
  outb(c, 0x3fc, 0x03);
  c.emit(0x66, 0xc7, 0x06, 0x00, 0x06, 0, 0, 0, 0); // mov dword [0x600], 0

  c.label('loop');
  c.emit(0x66, 0xff, 0x06, 0x00, 0x06); // inc dword [0x600]
  c.emit(0x66, 0xa1, 0x00, 0x06); // mov eax, [0x600]
  c.emit(0xb9, 0x08, 0x00); // mov cx, 8
  c.label('digit');
  c.emit(0x66, 0xc1, 0xc0, 0x04); // rol eax, 4: the next nibble, most significant first
  c.emit(0x88, 0xc3); // mov bl, al
  c.emit(0x80, 0xe3, 0x0f); // and bl, 0x0f
  c.emit(0x80, 0xc3, 0x30); // add bl, '0'
  c.emit(0x80, 0xfb, 0x39); // cmp bl, '9'
  c.rel([0x76], 'hexok', 1); // jbe hexok
  c.emit(0x80, 0xc3, 0x07); // add bl, 'A' - '9' - 1
  c.label('hexok');
  c.rel([0xe8], 'putc', 2); // call putc
  c.rel([0xe2], 'digit', 1); // loop digit
  c.emit(0xb3, 0x0a); // mov bl, '\n'
  c.rel([0xe8], 'putc', 2); // call putc
  // Wait for the next BIOS tick (18.2 Hz) with hlt, so the host CPU idles.
  c.emit(0xa1, 0x6c, 0x04); // mov ax, [0x46c]
  c.label('tick');
  c.emit(0xf4); // hlt
  c.emit(0x3b, 0x06, 0x6c, 0x04); // cmp ax, [0x46c]
  c.rel([0x74], 'tick', 1); // je tick
  c.rel([0xe9], 'loop', 2); // jmp loop

  // putc: writes bl to the UART once its transmit holding register is empty; keeps eax.
  c.label('putc');
  c.emit(0x66, 0x50); // push eax
  c.emit(0xba, 0xfd, 0x03); // mov dx, 0x3fd (line status)
  c.label('busy');
  c.emit(0xec); // in al, dx
  c.emit(0xa8, 0x20); // test al, 0x20
  c.rel([0x74], 'busy', 1); // jz busy
  c.emit(0xba, 0xf8, 0x03); // mov dx, 0x3f8
  c.emit(0x88, 0xd8); // mov al, bl
  c.emit(0xee); // out dx, al
  c.emit(0x66, 0x58); // pop eax
  c.emit(0xc3); // ret
  return c.assemble();
}

/** Writes the boot sector as a raw disk image of `size` bytes (4 MiB by default: room for qemu-io writes). */
export function writeCountingGuest(path: string, size = 4 * 1024 * 1024): void {
  const image = Buffer.alloc(size);
  countingBootSector().copy(image);
  writeFileSync(path, image);
}

/** The counts the guest printed, in order, from a serial log (complete lines only). */
export function countsInLog(text: string): number[] {
  const counts: number[] = [];
  for (const line of text.split('\n').slice(0, -1)) {
    const m = /([0-9A-F]{8})\s*$/.exec(line);
    if (m) counts.push(parseInt(m[1]!, 16));
  }
  return counts;
}
