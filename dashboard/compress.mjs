// After `vite build`: a Brotli (`.br`) and a gzip (`.gz`) copy of each text file in dist/, made
// once here so the host serves them as they are (it picks one by the request's Accept-Encoding)
// and never compresses at run time. Copies that would not be smaller are not written.

import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'

const dist = path.join(path.dirname(new URL(import.meta.url).pathname), 'dist')
const TEXT = /\.(js|mjs|css|html|svg|json|txt|map)$/

function* files(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) yield* files(p)
    else if (TEXT.test(e.name)) yield p
  }
}

let raw = 0
let br = 0
for (const file of files(dist)) {
  const bytes = fs.readFileSync(file)
  const brotli = zlib.brotliCompressSync(bytes, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
  })
  const gzip = zlib.gzipSync(bytes, { level: 9 })
  if (brotli.length < bytes.length) fs.writeFileSync(file + '.br', brotli)
  if (gzip.length < bytes.length) fs.writeFileSync(file + '.gz', gzip)
  raw += bytes.length
  br += Math.min(brotli.length, bytes.length)
}
console.log(`compress: ${(raw / 1024).toFixed(1)} KiB of text assets, ${(br / 1024).toFixed(1)} KiB with Brotli`)
