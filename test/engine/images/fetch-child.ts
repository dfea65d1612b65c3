// A second process for the image cache suites: fetches one source into a cache folder and prints the outcome
// as one JSON line. Run with NODE_EXTRA_CA_CERTS to trust the suite's own HTTPS server.
import { fetchImage, isImageFetchError } from '../../../src/engine/images';

async function main(): Promise<void> {
  const [source, cacheDir] = process.argv.slice(2);
  if (source === undefined || cacheDir === undefined) throw new Error('usage: fetch-child SOURCE CACHE_DIR');
  try {
    const image = await fetchImage(source, { cacheDir });
    process.stdout.write(JSON.stringify({ image }) + '\n');
  } catch (e) {
    if (!isImageFetchError(e)) throw e;
    process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }) + '\n');
  }
}

void main();
