// `vmsnap vm screenshot` of the real Debian 12 guest (cached image, cloud-init, TCG): its text console (the boot
// messages or the login prompt, whichever tty1 shows by then), not a blank frame, and what the guest writes to its
// console shows in the next screenshot.
import { strict as assert } from 'node:assert';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePng, distinctColours, isPng, type Png } from '../support/png';
import { debianSession } from './debian-session';
import { ROOT } from './vmsnap';

/** Pixels that differ between two frames of the same size. */
function changedPixels(a: Png, b: Png): number {
  let n = 0;
  for (let i = 0; i < a.rgba.length; i += 4) if (a.rgba.readUInt32BE(i) !== b.rgba.readUInt32BE(i)) n++;
  return n;
}

/** Lines of text on a console frame: bands of pixel rows with ink (not the top-left pixel's colour), gaps between. */
function textLines(png: Png): number {
  const background = png.rgba.readUInt32BE(0);
  let lines = 0;
  let inLine = false;
  for (let y = 0; y < png.height; y++) {
    let ink = false;
    for (let x = 0; x < png.width && !ink; x++) ink = png.rgba.readUInt32BE((y * png.width + x) * 4) !== background;
    if (ink && !inLine) lines++;
    inLine = ink;
  }
  return lines;
}

describe('cli: vm screenshot of a real Debian guest (TCG)', function () {
  this.timeout(15 * 60 * 1000);
  const session = debianSession('vmsnap-debian-screen-');
  const { scratch, ok } = session;
  const shot = async (name: string): Promise<Png> => {
    const file = join(scratch.dir, name);
    await ok(['vm', 'screenshot', 'dev', file]);
    const bytes = readFileSync(file);
    assert.ok(isPng(bytes), `${name} is a PNG`);
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    copyFileSync(file, join(ROOT, 'test-artifacts', `debian-${name}`));
    return decodePng(bytes);
  };

  before(() => session.setUp());
  after(() => session.tearDown());

  it('is a PNG of the guest\'s text console, not a blank frame, and shows what the guest writes to it next', async () => {
    await ok(['vm', 'create', 'dev', '--from-image', session.image(), '--disk-size', '4G', '--memory', '1024']);
    await ok(['vm', 'start', 'dev']);
    // Booted: SSH answers, so getty has had its moment on tty1 too.
    await ok(['vm', 'ssh', 'dev', '--', 'systemctl', 'is-active', 'getty@tty1.service']);
    // getty clears tty1 before it prints its banner, and "active" can come before the banner: a frame caught in
    // between is one colour, so a few more are taken before the checks below judge the last one.
    let login = await shot('console.png');
    for (let attempt = 0; attempt < 6 && textLines(login) < 2; attempt++) {
      await new Promise((r) => setTimeout(r, 5000));
      login = await shot('console.png');
    }
    const blank = { ...login, rgba: Buffer.alloc(login.rgba.length) };
    for (let i = 0; i < blank.rgba.length; i += 4) login.rgba.copy(blank.rgba, i, 0, 4); // one colour: the top-left pixel's
    assert.ok(distinctColours(login) >= 2, 'more than one colour');
    // At least "Debian GNU/Linux 12 dev tty1" and "dev login:" (or the boot loader's lines before them): dozens of
    // glyphs of a few dozen lit pixels each, on two lines or more.
    const ink = changedPixels(login, blank);
    assert.ok(ink > 400, `text on the console: ${ink} pixels differ from a blank frame (${login.width}x${login.height})`);
    assert.ok(textLines(login) >= 2, `the banner and the login prompt: ${textLines(login)} lines of text`);

    // The guest clears its console and writes eight lines: the next screenshot shows them. (getty may still redraw
    // tty1 right after boot and wipe them: then write again.)
    // The cursor stays at the end of the eighth line (no newline after it), so it adds no line of its own.
    const script = "{ printf '\\033[H\\033[2J'; printf 'VMSNAP SCREENSHOT TEST LINE %s\\n' 1 2 3 4 5 6 7; printf 'VMSNAP SCREENSHOT TEST LINE 8'; } | sudo tee /dev/tty1 >/dev/null";
    let written = login;
    for (let attempt = 0; attempt < 5; attempt++) {
      await ok(['vm', 'ssh', 'dev', '--', 'sh', '-c', script]);
      written = await shot('console-written.png');
      if (textLines(written) === 8) break;
      await new Promise((r) => setTimeout(r, 5000));
    }
    assert.deepEqual([written.width, written.height], [login.width, login.height]);
    assert.equal(textLines(written), 8, 'the eight lines the guest wrote, on a cleared console');
    assert.ok(changedPixels(login, written) > 1000, `the screen changed: ${changedPixels(login, written)} pixels`);
  });
});
