// `npm run bench`: every section measures the engine next to QEMU's own tools and returns table rows; this
// file only runs the sections and prints. Work files live under .bench/ and are removed afterwards.
// `npm run bench -- machine` runs only the sections whose name holds one of the words given.
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { devSection } from './dev';
import { libvirtSection } from './libvirt';
import { machineSection } from './machine';
import { qcow2Section } from './qcow2';
import { runtimeSection, thumbnailSection } from './runtime';
import { formatTable, type BenchRow } from './report';

interface Section {
  name: string;
  run: (workDir: string) => Promise<BenchRow[]>;
}

const sections: Section[] = [
  { name: 'qcow2 chain operations', run: qcow2Section },
  { name: 'machine library', run: machineSection },
  { name: 'running machines', run: runtimeSection },
  { name: 'snapshot thumbnails', run: thumbnailSection },
  { name: 'dev guest (Debian)', run: devSection },
  { name: 'libvirt (qemu:///system)', run: libvirtSection },
];

async function main(): Promise<void> {
  const root = resolve('.bench');
  const rows: BenchRow[] = [];
  const words = process.argv.slice(2);
  for (const section of sections.filter((s) => words.length === 0 || words.some((w) => s.name.includes(w)))) {
    const workDir = join(root, `${section.name.replace(/\W+/g, '-')}-${process.pid}`);
    mkdirSync(workDir, { recursive: true });
    try {
      console.log(`# ${section.name}`);
      rows.push(...(await section.run(workDir)));
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  }
  console.log(`\n${formatTable(rows)}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exitCode = 2;
});
